// Which way is better for a metric: declared by the script (run.json `metrics`, or wandb's
// define_metric goal; the server resolves it per series as `directions`), else guessed from
// the name (losses and errors lower is better, anything else higher).
import { h } from "preact";

export type Dir = "min" | "max";

export interface Direction {
  dir: Dir;
  /** false: nothing declared it, the name decided */
  declared: boolean;
}

export function guessDirection(metric: string): Dir {
  return /loss|err/i.test(metric) ? "min" : "max";
}

/** Series of the machine and the console (system/..., a rank's system/..., timings/...): no
 * run is better for using more memory or a longer section, so nothing is guessed for them. */
export function isMachineSeries(metric: string): boolean {
  return /^(rank\d+\/)?(system|timings)\//.test(metric);
}

/** The direction of `metric` over some runs: the first run that declares one, else the guess
 * (null for machine series, which have no "best" unless a script declares one). */
export function directionOf(metric: string, runs: { directions?: Record<string, string> }[]): Direction | null {
  for (const r of runs) {
    const d = r.directions?.[metric];
    if (d === "min" || d === "max") return { dir: d, declared: true };
  }
  return isMachineSeries(metric) ? null : { dir: guessDirection(metric), declared: false };
}

/** The value of `values` that is best in direction `dir`. */
export function bestOf(values: number[], dir: Dir): number {
  return dir === "min" ? Math.min(...values) : Math.max(...values);
}

export function directionTitle(metric: string, d: Direction): string {
  const way = d.dir === "min" ? "lower is better" : "higher is better";
  return d.declared
    ? `${way}: declared by the run (init(metrics={"${metric}": "${d.dir}"}) or define_metric)`
    : `${way}: not declared, guessed from the name (losses and errors lower, else higher); declare it with init(metrics={"${metric}": "min" or "max"})`;
}

/** ↑ / ↓ beside a metric's name; a guessed direction is faint and marked with "?". */
export function DirectionMark({ metric, d }: { metric: string; d: Direction }) {
  return h(
    "span",
    {
      class: `direction${d.declared ? "" : " guessed"}`,
      "data-testid": "direction",
      "data-dir": d.dir,
      "data-source": d.declared ? "declared" : "guessed",
      title: directionTitle(metric, d),
    },
    (d.dir === "min" ? "↓ min" : "↑ max") + (d.declared ? "" : "?"),
  );
}
