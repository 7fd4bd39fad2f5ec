/**
 * The tests' one Prometheus text-format parser (version 0.0.4), strict enough to catch a broken
 * exposition: every test that reads /metrics parses it here.
 */
export interface PromSample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

export interface PromFamily {
  type: string;
  help: string;
  samples: PromSample[];
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/**
 * Parse Prometheus' text format strictly: `# HELP` / `# TYPE` lines, samples `name{l="v",...} value
 * [timestamp]` with escaped label values, values as Go's strconv.ParseFloat reads them (the format's
 * definition), so the special values are case-insensitive: prom-client writes NaN as `Nan`, which
 * Prometheus reads, though a strict OpenMetrics parser would not.
 * Throws on any line it cannot read, a TYPE given twice or after its samples, or an unknown type.
 * Samples are grouped under the family of their TYPE line (histogram/summary suffixes included).
 */
export function parsePrometheusText(text: string): Map<string, PromFamily> {
  const families = new Map<string, PromFamily>();
  const family = (name: string): PromFamily => {
    let f = families.get(name);
    if (!f) families.set(name, (f = { type: 'untyped', help: '', samples: [] }));
    return f;
  };
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  lines.forEach((line, i) => {
    const where = `line ${i + 1} ("${line.slice(0, 120)}")`;
    if (line.trim() === '') return;
    if (line.startsWith('#')) {
      const m = /^#\s+(HELP|TYPE)\s+(\S+)(?:\s(.*))?$/.exec(line);
      if (!m) return; // a plain comment
      const [, kind, name, rest = ''] = m;
      if (!METRIC_NAME.test(name)) throw new Error(`bad metric name in ${where}`);
      if (kind === 'TYPE') {
        if (!['counter', 'gauge', 'histogram', 'summary', 'untyped'].includes(rest.trim())) throw new Error(`unknown type in ${where}`);
        const f = families.get(name);
        if (f && (f.type !== 'untyped' || f.samples.length > 0)) throw new Error(`TYPE given twice or after samples in ${where}`);
        family(name).type = rest.trim();
      } else {
        family(name).help = rest;
      }
      return;
    }
    const nm = /^([a-zA-Z_:][a-zA-Z0-9_:]*)/.exec(line);
    if (!nm) throw new Error(`bad sample in ${where}`);
    const name = nm[1];
    let pos = name.length;
    const labels: Record<string, string> = {};
    if (line[pos] === '{') {
      pos++;
      for (;;) {
        while (line[pos] === ' ') pos++;
        if (line[pos] === '}') {
          pos++;
          break;
        }
        const ln = /^([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"/.exec(line.slice(pos));
        if (!ln || !LABEL_NAME.test(ln[1])) throw new Error(`bad label in ${where}`);
        pos += ln[0].length;
        let value = '';
        for (;;) {
          const ch = line[pos++];
          if (ch === undefined) throw new Error(`unterminated label value in ${where}`);
          if (ch === '"') break;
          if (ch === '\\') {
            const esc = line[pos++];
            if (esc === 'n') value += '\n';
            else if (esc === '\\' || esc === '"') value += esc;
            else throw new Error(`bad escape in ${where}`);
          } else value += ch;
        }
        if (ln[1] in labels) throw new Error(`label ${ln[1]} twice in ${where}`);
        labels[ln[1]] = value;
        while (line[pos] === ' ') pos++;
        if (line[pos] === ',') pos++;
        else if (line[pos] !== '}') throw new Error(`expected , or } in ${where}`);
      }
    }
    const rest = line.slice(pos);
    const vm = /^\s+(\S+)(?:\s+(-?\d+))?\s*$/.exec(rest);
    if (!vm) throw new Error(`bad value in ${where}`);
    const raw = vm[1];
    let value: number;
    const special = /^([-+]?)(inf|infinity|nan)$/i.exec(raw);
    if (special) value = /^nan$/i.test(special[2]) ? NaN : special[1] === '-' ? -Infinity : Infinity;
    else if (/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(raw)) value = Number(raw);
    else throw new Error(`bad value "${raw}" in ${where}`);
    const base = families.has(name) ? name : (name.replace(/_(bucket|sum|count)$/, '') || name);
    family(families.has(base) ? base : name).samples.push({ name, labels, value });
  });
  return families;
}

/** The value of the one sample of `name` whose labels include `labels`; throws when absent. */
export function promValue(families: Map<string, PromFamily>, name: string, labels: Record<string, string> = {}): number {
  const f = families.get(name);
  const s = f?.samples.find((x) => x.name === name && Object.entries(labels).every(([k, v]) => x.labels[k] === v));
  if (!s) throw new Error(`metric ${name}${JSON.stringify(labels)} missing from /metrics (families: ${[...families.keys()].join(', ')})`);
  return s.value;
}
