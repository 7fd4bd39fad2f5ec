/** Types of hello.mjs (the attackers are plain JavaScript, run by node as they are). */
export function hello(token: string, name: string): Uint8Array;
export function decode(data: Buffer | ArrayBuffer | Buffer[]): { kind: string; msg: unknown; bytes: number };
