// Group lines: the runs of a group drawn as one line (their mean) with a band (min to max, or
// mean ± one standard deviation) around it.

export type Band = "minmax" | "std";

export interface Aggregate {
  x: number[];
  mean: number[];
  lo: number[];
  hi: number[];
  /** How many runs have a value at each x. */
  count: number[];
}

/** The mean and band of several series at common x values.
 *
 *  The x values are the union of the series' x (every k-th when there are more than
 *  `maxPoints`). A series counts at an x from its first to its last point, with its value at
 *  the last point at or before that x, so runs logged at different steps still line up and a
 *  shorter run does not drag the mean after it ended. Non-finite values are left out. */
export function aggregate(series: { x: number[]; y: number[] }[], band: Band, maxPoints = 1000): Aggregate {
  const all = new Set<number>();
  for (const s of series) for (const v of s.x) if (Number.isFinite(v)) all.add(v);
  let xs = Float64Array.from(all).sort();
  if (xs.length > maxPoints) {
    const k = Math.ceil(xs.length / maxPoints);
    const picked: number[] = [];
    for (let i = 0; i < xs.length; i += k) picked.push(xs[i]);
    if (picked[picked.length - 1] !== xs[xs.length - 1]) picked.push(xs[xs.length - 1]);
    xs = Float64Array.from(picked);
  }
  const n = xs.length;
  const sum = new Float64Array(n);
  const sq = new Float64Array(n);
  const min = new Float64Array(n).fill(Infinity);
  const max = new Float64Array(n).fill(-Infinity);
  const count = new Array<number>(n).fill(0);
  for (const s of series) {
    const m = s.x.length;
    if (!m) continue;
    const first = s.x[0];
    const last = s.x[m - 1];
    let j = 0;
    for (let i = 0; i < n; i++) {
      const x = xs[i];
      if (x < first || x > last) continue;
      while (j + 1 < m && s.x[j + 1] <= x) j++;
      const v = s.y[j];
      if (!Number.isFinite(v)) continue;
      sum[i] += v;
      sq[i] += v * v;
      if (v < min[i]) min[i] = v;
      if (v > max[i]) max[i] = v;
      count[i]++;
    }
  }
  const out: Aggregate = { x: [], mean: [], lo: [], hi: [], count: [] };
  for (let i = 0; i < n; i++) {
    const c = count[i];
    if (!c) continue;
    const mean = sum[i] / c;
    out.x.push(xs[i]);
    out.mean.push(mean);
    out.count.push(c);
    if (band === "std") {
      const sd = Math.sqrt(Math.max(0, sq[i] / c - mean * mean));
      out.lo.push(mean - sd);
      out.hi.push(mean + sd);
    } else {
      out.lo.push(min[i]);
      out.hi.push(max[i]);
    }
  }
  return out;
}
