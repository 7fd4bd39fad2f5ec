/**
 * Training progress for people: a one-line bar redrawn in place on a terminal, plain lines (at most
 * one a second, plus every evaluation) when stdout is not a terminal.
 */
import type { EvalReport, StepReport } from '@gradhub/coordinator';

export interface Progress {
  step(r: StepReport): void;
  evaluation(r: EvalReport): void;
  message(text: string): void;
  done(): void;
}

export function createProgress(out: NodeJS.WriteStream = process.stdout): Progress {
  const tty = out.isTTY === true;
  let lastPlain = 0;
  let drawn = false;
  const clear = (): void => {
    if (tty && drawn) out.write('\r\x1b[2K');
    drawn = false;
  };
  const describe = (r: StepReport): string =>
    `epoch ${r.epoch}/${r.epochs} step ${r.step}/${r.totalSteps} loss ${r.loss.toFixed(4)} acc ${(100 * r.accuracy).toFixed(1)}% ${Math.round(r.samplesPerS)} samples/s`;
  return {
    step(r) {
      if (tty) {
        const width = 24;
        const filled = Math.round((width * r.step) / r.totalSteps);
        clear();
        out.write(`[${'='.repeat(filled)}${' '.repeat(width - filled)}] ${describe(r)}`);
        drawn = true;
        return;
      }
      const now = Date.now();
      if (now - lastPlain >= 1000 || r.step === r.totalSteps) {
        lastPlain = now;
        out.write(describe(r) + '\n');
      }
    },
    evaluation(r) {
      clear();
      out.write(`epoch ${r.epoch} (step ${r.step}): test loss ${r.testLoss.toFixed(4)}, test accuracy ${(100 * r.testAccuracy).toFixed(2)}%\n`);
    },
    message(text) {
      clear();
      out.write(text + '\n');
    },
    done() {
      if (tty && drawn) out.write('\n');
      drawn = false;
    },
  };
}
