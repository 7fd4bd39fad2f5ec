/**
 * "Did you mean ...?" for mistyped flags and commands: the nearest candidate by edit distance
 * (Damerau-Levenshtein: insert, delete, substitute, swap two neighbours), as git and kubectl do.
 */

/** Edit distance between `a` and `b` (optimal string alignment: a swap of neighbours costs 1). */
export function editDistance(a: string, b: string): number {
  // d[i][j] = distance between a[0, i) and b[0, j), kept as three rolling rows.
  let prev2 = new Array<number>(b.length + 1).fill(0);
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = new Array<number>(b.length + 1);
    cur[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      cur[j] = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) cur[j] = Math.min(cur[j], prev2[j - 2] + 1);
    }
    prev2 = prev;
    prev = cur;
  }
  return prev[b.length];
}

/**
 * The candidate nearest to `word`, or null when none is near enough: at most 2 edits and at most a
 * third of the word's length (so `--lr` suggests nothing for `--xy`), or `word` is the start of
 * exactly one candidate (`--check` is ambiguous, `--checkpoint-e` is not). Ties go to the first.
 */
export function nearest(word: string, candidates: readonly string[]): string | null {
  let best: string | null = null;
  let bestD = Infinity;
  for (const c of candidates) {
    const d = editDistance(word, c);
    if (d < bestD) {
      best = c;
      bestD = d;
    }
  }
  if (best !== null && bestD > 0 && bestD <= Math.min(2, Math.max(1, Math.floor(word.length / 3)))) return best;
  const prefixed = word.length >= 3 ? candidates.filter((c) => c.startsWith(word)) : [];
  return prefixed.length === 1 ? prefixed[0] : null;
}

/** " (did you mean X?)" for the nearest candidate, or '' when there is none. */
export function didYouMean(word: string, candidates: readonly string[], prefix = ''): string {
  const n = nearest(word, candidates);
  return n === null ? '' : ` (did you mean ${prefix}${n}?)`;
}
