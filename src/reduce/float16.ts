// IEEE half precision for --grad-dtype float16. Every microbatch gradient is rounded to half
// precision where it is computed, before any sum, so the reduction tree still sees the same
// values whoever computed them; the wire then carries them exactly in 2 bytes each.

/** How gradients are computed into sums and sent (--grad-dtype). */
export const GRAD_DTYPES = ['float32', 'float16'] as const;
export type GradDType = (typeof GRAD_DTYPES)[number];

/** IEEE half precision, round to nearest even; used by --grad-dtype float16. */
export function float32ToFloat16Bytes(values: Float32Array): Uint8Array {
  const out = Buffer.alloc(values.length * 2);
  const f = new Float32Array(1);
  const u = new Uint32Array(f.buffer);
  for (let i = 0; i < values.length; i++) {
    f[0] = values[i];
    const x = u[0];
    const sign = (x >>> 16) & 0x8000;
    const exp = (x >>> 23) & 0xff;
    let mant = x & 0x7fffff;
    let h: number;
    if (exp === 0xff) h = sign | 0x7c00 | (mant ? 0x200 : 0);
    else {
      const e = exp - 127 + 15;
      if (e >= 0x1f) h = sign | 0x7c00;
      else if (e <= 0) {
        if (e < -10) h = sign;
        else {
          mant |= 0x800000;
          const shift = 14 - e;
          let half = mant >>> shift;
          const rem = mant & ((1 << shift) - 1);
          const mid = 1 << (shift - 1);
          if (rem > mid || (rem === mid && half & 1)) half++;
          h = sign | half;
        }
      } else {
        h = sign | (e << 10) | (mant >>> 13);
        const rem = mant & 0x1fff;
        if (rem > 0x1000 || (rem === 0x1000 && h & 1)) h++;
      }
    }
    out.writeUInt16LE(h, i * 2);
  }
  return out;
}

export function float16BytesToFloat32(bytes: Uint8Array, count: number, out: Float32Array = new Float32Array(count)): Float32Array {
  const view = new DataView(bytes.buffer, bytes.byteOffset, count * 2);
  for (let i = 0; i < count; i++) {
    const h = view.getUint16(i * 2, true);
    const sign = h & 0x8000 ? -1 : 1;
    const e = (h >>> 10) & 0x1f;
    const m = h & 0x3ff;
    if (e === 0) out[i] = sign * m * 2 ** -24;
    else if (e === 0x1f) out[i] = m ? NaN : sign * Infinity;
    else out[i] = sign * (1 + m / 1024) * 2 ** (e - 15);
  }
  return out;
}


/** Rounds every value to the nearest half-precision value (round to nearest even), in place. */
export function roundToFloat16(values: Float32Array): void {
  values.set(float16BytesToFloat32(float32ToFloat16Bytes(values), values.length));
}
