// setupFiles of the fast tier (vitest.unit.config.ts): its tests run pure modules only, so opening
// or accepting a network connection (TCP or Unix socket, fetch included) or starting a child
// process throws here, naming what was tried. A test that needs one belongs to the full run
// (`npm test`) only: take it out of UNIT_TESTS. Worker threads are allowed (the kernels' helpers).
import { createRequire, syncBuiltinESMExports } from 'node:module';
import * as net from 'node:net';

function refuse(what: string): never {
  throw new Error(`${what} in a test of the fast tier (npm run test:unit), which runs pure modules only: move this test file out of UNIT_TESTS in vitest.unit.config.ts`);
}

net.Socket.prototype.connect = function connect(): never {
  refuse('a network connection');
};
net.Server.prototype.listen = function listen(): never {
  refuse('a listening server');
};
// The CommonJS exports object (an ES module namespace cannot be assigned to); syncBuiltinESMExports
// then makes `import { spawn } from 'node:child_process'` see the patched functions too.
const cp = createRequire(import.meta.url)('node:child_process') as Record<string, unknown> & {
  ChildProcess: { prototype: { spawn: () => never } };
};
for (const name of ['spawn', 'spawnSync', 'exec', 'execSync', 'execFile', 'execFileSync', 'fork']) {
  cp[name] = (): never => refuse(`child_process.${name}`);
}
cp.ChildProcess.prototype.spawn = function spawn(): never {
  refuse('a child process');
};
syncBuiltinESMExports();
