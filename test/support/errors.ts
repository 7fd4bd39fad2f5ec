/** Matches an error gradhub raises for its own bugs (a broken contract): a GradhubError with code E_INTERNAL. */
import { expect } from 'vitest';

export const INTERNAL = expect.objectContaining({ name: 'GradhubError', code: 'E_INTERNAL' });
