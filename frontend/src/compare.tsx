// Compare: params side by side with differences marked, summary metrics, and parallel
// coordinates of the params against a chosen metric.
import { useMemo } from "preact/hooks";
import { Json, RunDetail } from "./api";
import { runColors } from "./colors";
import { metricNames, useRunDetails } from "./charts";
import { runLabels } from "./dashboard";
import { fmtNumber, fmtValue } from "./format";
import { bestOf, directionOf, DirectionMark, directionTitle } from "./directions";
import { listParam, navigate, Route, updateParams } from "./route";
import { Section, StatusBadge } from "./widgets";

export function flatten(obj: Record<string, Json>, prefix = "", out: Record<string, Json> = {}): Record<string, Json> {
  for (const [k, v] of Object.entries(obj)) {
    const key = prefix ? `${prefix}.${k}` : k;
    if (typeof v === "object" && v !== null && !Array.isArray(v)) flatten(v, key, out);
    else out[key] = v;
  }
  return out;
}

const same = (vals: Json[]) => vals.every((v) => JSON.stringify(v) === JSON.stringify(vals[0]));

export function Compare({ route }: { route: Route }) {
  const ids = listParam(route.params, "runs");
  const details = useRunDetails(ids);
  const runs = ids.map((id) => details.get(id)).filter((d): d is RunDetail => Boolean(d));
  const colors = runColors(ids);
  const labels = runLabels(ids, new Map(runs.map((r) => [r.id, r.name])));
  const flat = useMemo(() => runs.map((r) => flatten(r.params)), [runs]);
  const keys = useMemo(() => [...new Set(flat.flatMap((f) => Object.keys(f)))].sort(), [flat]);
  const onlyDiff = route.params.get("diff") === "1";
  const metrics = metricNames(runs);
  const metric = route.params.get("metric") && metrics.includes(route.params.get("metric")!) ? route.params.get("metric")! : metrics.find((m) => !m.startsWith("timings/")) ?? metrics[0];

  if (ids.length < 2) return <div class="page empty">Select two or more runs in the table and press “compare”.</div>;
  if (!runs.length) return <div class="page muted">loading…</div>;
  const differing = keys.filter((k) => !same(flat.map((f) => (k in f ? f[k] : null))));
  const shownKeys = onlyDiff ? differing : keys;
  return (
    <div class="page compare" data-testid="compare">
      <h1>Compare {runs.length} runs</h1>
      <Section
        title="Params"
        right={
          <label class="muted">
            <input type="checkbox" checked={onlyDiff} onChange={(e) => updateParams({ diff: (e.target as HTMLInputElement).checked ? "1" : null })} />
            only differences ({differing.length} of {keys.length})
          </label>
        }
      >
        <div class="table-scroll">
          <table class="data-table compare-table" data-testid="compare-params">
            <thead>
              <tr>
                <th>param</th>
                {runs.map((r) => (
                  <th key={r.id}>
                    <span class="swatch" style={{ background: colors.get(r.id) }} />
                    <a href={`#/run/${encodeURIComponent(r.id)}`}>{labels.get(r.id)}</a>
                  </th>
                ))}
              </tr>
            </thead>
            <tbody>
              <tr>
                <td class="muted">status</td>
                {runs.map((r) => <td key={r.id}><StatusBadge status={r.status} /></td>)}
              </tr>
              {shownKeys.map((k) => {
                const vals = flat.map((f) => (k in f ? f[k] : null));
                const diff = !same(vals);
                return (
                  <tr key={k} class={diff ? "differs" : ""} data-param={k}>
                    <td>{k}</td>
                    {vals.map((v, i) => <td key={i} class="mono">{v === null ? <span class="muted">—</span> : fmtValue(v)}</td>)}
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
      </Section>
      <Section title="Metrics (last value; min–max)">
        <div class="table-scroll">
          <table class="data-table compare-table">
            <thead>
              <tr><th>metric</th>{runs.map((r) => <th key={r.id}>{labels.get(r.id)}</th>)}</tr>
            </thead>
            <tbody>
              {metrics.map((m) => {
                const lasts = runs.map((r) => r.summary[m]?.last);
                const finite = lasts.filter((v): v is number => v !== undefined && Number.isFinite(v));
                // Mark the best value only where the runs differ, by the metric's declared
                // direction (else guessed from its name: lower is better for losses and errors).
                const differ = finite.length > 1 && Math.min(...finite) !== Math.max(...finite);
                const dir = directionOf(m, runs);
                const best = differ && dir ? bestOf(finite, dir.dir) : undefined;
                return (
                  <tr key={m} data-metric={m}>
                    <td>{m} {dir && <DirectionMark metric={m} d={dir} />}</td>
                    {runs.map((r) => {
                      const s = r.summary[m];
                      const isBest = s !== undefined && s.last === best;
                      return (
                        <td
                          key={r.id} data-run={r.id} class={`num${isBest ? " best" : ""}`}
                          title={isBest && dir ? `best of these runs (${directionTitle(m, dir)})` : undefined}
                        >
                          {s ? <>{fmtNumber(s.last)} <span class="muted">({fmtNumber(s.min)}–{fmtNumber(s.max)})</span></> : <span class="muted">—</span>}
                        </td>
                      );
                    })}
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
      </Section>
      <Section
        title="Parallel coordinates"
        right={
          <label>
            metric{" "}
            <select value={metric} data-testid="pc-metric" onChange={(e) => updateParams({ metric: (e.target as HTMLSelectElement).value })}>
              {metrics.map((m) => <option key={m} value={m}>{m}</option>)}
            </select>
          </label>
        }
      >
        <ParallelCoords runs={runs} flat={flat} keys={differing.length ? differing : keys} metric={metric} colors={colors} labels={labels} />
      </Section>
      <p><a href="#/" onClick={(e) => { e.preventDefault(); navigate("/", { sel: ids.join(",") }); }}>← back to the runs with this selection</a></p>
    </div>
  );
}

interface Axis {
  key: string;
  numeric: boolean;
  constant: boolean;
  lo: number;
  hi: number;
  cats: string[];
}

function ParallelCoords(props: {
  runs: RunDetail[];
  flat: Record<string, Json>[];
  keys: string[];
  metric: string | undefined;
  colors: Map<string, string>;
  labels: Map<string, string>;
}) {
  const { runs, flat, metric } = props;
  const keys = props.keys.slice(0, 12);
  const cols: { key: string; vals: (Json | undefined)[] }[] = keys.map((k) => ({ key: k, vals: flat.map((f) => f[k]) }));
  if (metric) cols.push({ key: metric, vals: runs.map((r) => r.summary[metric]?.last ?? null) });
  const axes: Axis[] = cols.map(({ key, vals }) => {
    const nums = vals.filter((v): v is number => typeof v === "number" && Number.isFinite(v));
    const numeric = nums.length > 0 && nums.length === vals.filter((v) => v !== null && v !== undefined).length;
    const cats = numeric ? [] : [...new Set(vals.map((v) => fmtValue(v ?? null)))].sort();
    let lo = numeric ? Math.min(...nums) : 0;
    let hi = numeric ? Math.max(...nums) : cats.length - 1;
    const constant = numeric && hi === lo;
    if (hi === lo) {
      lo -= 1;
      hi += 1;
    }
    return { key, numeric, constant, lo, hi, cats };
  });
  const W = Math.max(480, axes.length * 130);
  const H = 322;
  const top = 34;
  const bottom = H - 46;
  const missingY = bottom + 22; // a run without a value on an axis goes through its "missing" tick
  const xAt = (i: number) => 60 + (i * (W - 120)) / Math.max(1, axes.length - 1);
  const yAt = (a: Axis, v: Json | undefined) => {
    if (v === null || v === undefined) return missingY;
    const t = a.numeric ? ((v as number) - a.lo) / (a.hi - a.lo) : a.cats.length <= 1 ? 0.5 : a.cats.indexOf(fmtValue(v)) / (a.cats.length - 1);
    if (!Number.isFinite(t)) return missingY;
    return bottom - t * (bottom - top);
  };
  const hasMissing = cols.map((c, i) => c.vals.some((v) => yAt(axes[i], v) === missingY));
  return (
    <div class="table-scroll">
      <svg class="parallel" width={W} height={H} data-testid="parallel">
        {axes.map((a, i) => (
          <g key={a.key}>
            <line x1={xAt(i)} x2={xAt(i)} y1={top} y2={bottom} stroke="#999" />
            {hasMissing[i] && (
              <>
                <line x1={xAt(i) - 4} x2={xAt(i) + 4} y1={missingY} y2={missingY} stroke="#999" />
                <text x={xAt(i) + 6} y={missingY + 4} class="pc-tick pc-missing" data-testid="pc-missing">missing</text>
              </>
            )}
            <text x={xAt(i)} y={top - 16} text-anchor="middle" class={`pc-title${i === axes.length - 1 && metric ? " pc-metric" : ""}`}>{a.key}</text>
            {a.constant ? (
              <text x={xAt(i) + 4} y={(top + bottom) / 2 - 4} class="pc-tick">{fmtNumber(a.lo + 1)}</text>
            ) : a.numeric ? (
              <>
                <text x={xAt(i) + 4} y={top + 4} class="pc-tick">{fmtNumber(a.hi)}</text>
                <text x={xAt(i) + 4} y={bottom} class="pc-tick">{fmtNumber(a.lo)}</text>
              </>
            ) : (
              a.cats.map((c, j) => (
                <text key={c} x={xAt(i) + 4} y={a.cats.length <= 1 ? (top + bottom) / 2 : bottom - (j / (a.cats.length - 1)) * (bottom - top)} class="pc-tick">{c}</text>
              ))
            )}
          </g>
        ))}
        {runs.map((r, ri) => {
          const points = cols.map((c, i) => `${xAt(i)},${yAt(axes[i], c.vals[ri])}`);
          return (
            <g key={r.id} class="pc-run" data-run={r.id}>
              <title>{props.labels.get(r.id)}</title>
              {points.length === 1 ? (
                <circle cx={points[0].split(",")[0]} cy={points[0].split(",")[1]} r="3" fill={props.colors.get(r.id)} />
              ) : (
                <polyline points={points.join(" ")} fill="none" stroke={props.colors.get(r.id)} stroke-width="2" opacity="0.85" />
              )}
            </g>
          );
        })}
      </svg>
    </div>
  );
}
