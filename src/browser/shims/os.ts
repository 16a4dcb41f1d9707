// node:os as the worker uses it: the byte order (read off a typed array) and a host name.
export const endianness = (): 'LE' | 'BE' => (new Uint8Array(new Uint16Array([1]).buffer)[0] === 1 ? 'LE' : 'BE');
export const hostname = (): string => 'browser';
