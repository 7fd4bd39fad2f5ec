import { describe, expect, it } from 'vitest';
import { didYouMean, editDistance, nearest } from '../src/suggest.js';

describe('editDistance', () => {
  it('counts inserts, deletes, substitutions and swaps of neighbours', () => {
    expect(editDistance('', '')).toBe(0);
    expect(editDistance('epoch', 'epochs')).toBe(1);
    expect(editDistance('trian', 'train')).toBe(1);
    expect(editDistance('kitten', 'sitting')).toBe(3);
    expect(editDistance('abc', '')).toBe(3);
  });
});

describe('nearest', () => {
  const flags = ['epochs', 'steps', 'lr', 'log-level', 'log-format', 'checkpoint-dir', 'checkpoint-every', 'checkpoint-keep'];
  it('suggests the closest candidate, or a unique completion', () => {
    expect(nearest('epoch', flags)).toBe('epochs');
    expect(nearest('log-levle', flags)).toBe('log-level');
    expect(nearest('checkpoint-e', flags)).toBe('checkpoint-every');
  });
  it('suggests nothing far away, nothing ambiguous, nothing for an exact match', () => {
    expect(nearest('xy', flags)).toBeNull();
    expect(nearest('check', flags)).toBeNull();
    expect(nearest('banana', flags)).toBeNull();
    expect(nearest('lr', flags)).toBeNull();
  });
  it('phrases the hint', () => {
    expect(didYouMean('epoch', flags, '--')).toBe(' (did you mean --epochs?)');
    expect(didYouMean('zzzzzz', flags)).toBe('');
  });
});
