// Child of bench.mjs: what moving a remote step's two frames costs when nothing hides it. Two
// processes exchange one binary WebSocket frame of --bytes each way (the size of LeNet-5's
// weights and of a gradient), after an idle gap like a step's compute time, as the coordinator
// and a worker do every step. No protobuf and no compute: what is left is Node and ws reading
// the socket into fresh buffers, the loopback, and waking each process (on the 2-vCPU microVM
// of docs/performance.md, mostly the first: Python moves the same frames in 0.2 ms).
// Prints one JSON line: {medianMs, p10Ms, p90Ms, bytes, gapMs, rounds}.
//
//   node scripts/bench-loopback.mjs [bytes] [gapMs] [rounds]
import { fork } from 'node:child_process';
import { WebSocket, WebSocketServer } from 'ws';

const [bytes, gapMs, rounds] = [Number(process.argv[2] ?? 243224), Number(process.argv[3] ?? 18), Number(process.argv[4] ?? 100)];

if (process.env.LOOPBACK_ECHO) {
  // The echo side: answers every frame with a frame of the same size.
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false, maxPayload: 64 << 20 });
  wss.on('listening', () => process.send(wss.address().port));
  wss.on('connection', (ws) => {
    ws.on('message', (data) => ws.send(Buffer.alloc(data.length), { binary: true }));
    ws.on('close', () => wss.close(() => process.exit(0)));
  });
} else {
  const echo = fork(new URL(import.meta.url).pathname, [], { env: { ...process.env, LOOPBACK_ECHO: '1' } });
  const port = await new Promise((resolve) => echo.once('message', resolve));
  // Client frames unmasked, as lenet-worker sends them.
  const ws = new WebSocket(`ws://127.0.0.1:${port}`, { perMessageDeflate: false, generateMask: (m) => m.fill(0), maxPayload: 64 << 20 });
  await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
  const frame = Buffer.alloc(bytes);
  const times = [];
  for (let i = 0; i < rounds + 10; i++) {
    await new Promise((r) => setTimeout(r, gapMs));
    const t0 = performance.now();
    ws.send(frame, { binary: true });
    await new Promise((r) => ws.once('message', r));
    if (i >= 10) times.push(performance.now() - t0); // the first 10 warm the connection up
  }
  ws.close();
  await new Promise((r) => echo.once('exit', r));
  times.sort((a, b) => a - b);
  const at = (q) => times[Math.min(times.length - 1, Math.floor(q * times.length))];
  process.stdout.write(JSON.stringify({ medianMs: at(0.5), p10Ms: at(0.1), p90Ms: at(0.9), bytes, gapMs, rounds }) + '\n');
}
