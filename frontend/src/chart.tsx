// One chart panel: a metric of several runs, overlaid, with smoothing, envelope, zoom, read-out.
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import { fetchScalars, fetchScalarsMany, Series } from "./api";
import { aggregate, Band } from "./groups";
import { withAlpha } from "./colors";
import { axisFormatter, fmtDuration, fmtStep, isSystemMetric, STEP_INCRS, unitFormatter } from "./format";
import { useLive } from "./live";
import { seriesStore } from "./series";
import { canvasColors, useDark } from "./theme";

export type XAxis = "step" | "time" | "relative";

export interface ChartRun {
  id: string;
  label: string;
  color: string;
  /** A group line: the runs whose mean it draws (with a band around it). */
  members?: string[];
}

export interface ChartProps {
  metric: string;
  runs: ChartRun[];
  smoothing: number;
  xAxis: XAxis;
  logY: boolean;
  band?: Band;
  height?: number;
  /** The run to highlight (hovered here, in another chart or in the table). */
  highlight?: string | null;
  onHover?: (run: string | null) => void;
  /** Drawn across the whole width of the grid; `onWide` toggles it. */
  wide?: boolean;
  onWide?: () => void;
}

/** Time-weighted exponential moving average, aware of the spacing of the points and with the
 *  start-up bias removed (the first points are not pulled to 0).
 *
 *  `s` is the weight of the past per average spacing of the points: a point `dx` after the
 *  previous one keeps `s ** (dx / spacing)` of the average. On evenly spaced points this is the
 *  usual EMA; across a gap (a resumed run, sparse logging, a downsampled bucket) the old
 *  values count for less, as they are further away, rather than as much as a neighbour's. */
export function ema(x: number[], values: number[], s: number): number[] {
  if (s <= 0) return values.slice();
  const n = values.length;
  const out = new Array<number>(n);
  const spacing = n > 1 && x[n - 1] > x[0] ? (x[n - 1] - x[0]) / (n - 1) : 1;
  const logS = Math.log(s);
  let acc = 0;
  let norm = 0;
  let prev: number | null = null;
  for (let i = 0; i < n; i++) {
    const v = values[i];
    if (!Number.isFinite(v)) {
      out[i] = v;
      continue;
    }
    const dx = prev === null ? 0 : x[i] - prev;
    const w = dx > 0 && Number.isFinite(dx) ? Math.exp((logS * dx) / spacing) : s;
    acc = acc * w + (1 - w) * v;
    norm = norm * w + (1 - w);
    out[i] = acc / norm;
    prev = x[i];
  }
  return out;
}

interface Prepared {
  run: ChartRun;
  x: number[];
  y: number[];
  raw: number[];
  lo?: number[];
  hi?: number[];
  t0: number;
  /** A group line: how many of its runs have the series. */
  runs?: number;
}

function prepare(run: ChartRun, s: Series, xAxis: XAxis, smoothing: number, t0?: number): Prepared {
  const n = s.value.length;
  const idx = Array.from({ length: n }, (_, i) => i);
  const base = t0 ?? s.time[0] ?? 0;
  const xOf = (i: number) => (xAxis === "step" ? s.step[i] : xAxis === "time" ? s.time[i] : s.time[i] - base);
  // uPlot wants x ascending; a resumed run may log an old step again.
  let sorted = true;
  for (let i = 1; i < n; i++) if (xOf(i) < xOf(i - 1)) { sorted = false; break; }
  if (!sorted) idx.sort((a, b) => xOf(a) - xOf(b));
  const x = idx.map(xOf);
  const raw = idx.map((i) => s.value[i]);
  const p: Prepared = { run, x, raw, y: ema(x, raw, smoothing), t0: base };
  if (s.downsampled && s.min && s.max && s.min.length === n) {
    p.lo = idx.map((i) => s.min![i]);
    p.hi = idx.map((i) => s.max![i]);
  }
  return p;
}

function clean(v: number | undefined, logY: boolean): number | null {
  if (v === undefined || !Number.isFinite(v)) return null;
  if (logY && v <= 0) return null;
  return v;
}

interface Built {
  data: uPlot.AlignedData;
  series: uPlot.Series[];
  bands: uPlot.Band[];
  structure: string;
  /** The run each uPlot series draws (index 0, x: null) and each run's main line. */
  owner: (string | null)[];
  main: Map<string, number>;
}

function build(prep: Prepared[], smoothing: number, logY: boolean): Built {
  const xsSet = new Set<number>();
  for (const p of prep) for (const v of p.x) if (Number.isFinite(v)) xsSet.add(v);
  const xs = Float64Array.from(xsSet).sort();
  const pos = new Map<number, number>();
  xs.forEach((v, i) => pos.set(v, i));
  const data: (number | null)[][] = [];
  const series: uPlot.Series[] = [{}];
  const bands: uPlot.Band[] = [];
  const parts: string[] = [];
  const owner: (string | null)[] = [null];
  const main = new Map<string, number>();
  const col = (p: Prepared, vals: number[]) => {
    const out = new Array<number | null>(xs.length).fill(null);
    for (let i = 0; i < p.x.length; i++) {
      const j = pos.get(p.x[i]);
      if (j !== undefined) out[j] = clean(vals[i], logY);
    }
    return out;
  };
  for (const p of prep) {
    const c = p.run.color;
    if (p.lo && p.hi) {
      const hiIdx = series.length;
      data.push(col(p, p.hi));
      series.push({ label: "max", stroke: withAlpha(c, 0), width: 0, points: { show: false }, spanGaps: true });
      data.push(col(p, p.lo));
      series.push({ label: "min", stroke: withAlpha(c, 0), width: 0, points: { show: false }, spanGaps: true });
      bands.push({ series: [hiIdx, hiIdx + 1], fill: withAlpha(c, p.runs !== undefined ? 0.2 : 0.14) });
    }
    if (smoothing > 0) {
      data.push(col(p, p.raw));
      series.push({ label: "raw", stroke: withAlpha(c, 0.28), width: 1, points: { show: false }, spanGaps: true });
    }
    data.push(col(p, p.y));
    series.push({ label: p.run.label, stroke: c, width: 2, points: { show: false }, spanGaps: true });
    while (owner.length < series.length) owner.push(p.run.id);
    main.set(p.run.id, series.length - 1);
    parts.push(`${p.run.id}:${p.lo ? 1 : 0}`);
  }
  return {
    data: [Array.from(xs), ...data] as unknown as uPlot.AlignedData,
    series,
    bands,
    structure: `${parts.join(",")}|${smoothing > 0}|${logY}`,
    owner,
    main,
  };
}

/** The index of a run's point at x (the nearest at or before x). */
function indexAt(p: Prepared, x: number): number | undefined {
  let lo = 0;
  let hi = p.x.length - 1;
  if (hi < 0 || x < p.x[0]) return undefined;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (p.x[mid] <= x) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

/** Seconds since the run's first point; sub-second ticks keep the decimals they need. */
function fmtRelative(v: number, incr: number): string {
  if (incr >= 1 || v === 0) return fmtDuration(v);
  const decimals = Math.min(3, Math.max(1, Math.ceil(-Math.log10(incr))));
  return `${v.toFixed(decimals)}s`;
}

function fmtX(x: number, xAxis: XAxis): string {
  if (xAxis === "step") return fmtStep(x);
  if (xAxis === "relative") return x < 10 ? `${x.toFixed(3)}s` : fmtDuration(x);
  return new Date(x * 1000).toLocaleString();
}

export function Chart(props: ChartProps) {
  const { metric, runs, smoothing, xAxis, logY } = props;
  const height = props.height ?? 220;
  const dark = useDark();
  const fmtY = useMemo(() => unitFormatter(metric), [metric]);
  const ticksY = useMemo(() => axisFormatter(metric), [metric]);
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const structure = useRef("");
  const [version, setVersion] = useState(0);
  const [zoom, setZoom] = useState<{ min: number; max: number } | null>(null);
  const [zoomData, setZoomData] = useState<Map<string, Series> | null>(null);
  const [cursorX, setCursorX] = useState<number | null>(null);
  const [error, setError] = useState<string | null>(null);
  const zoomRef = useRef(zoom);
  zoomRef.current = zoom;
  const onHover = useRef(props.onHover);
  onHover.current = props.onHover;
  const builtRef = useRef<Built | null>(null);
  const runKey = runs.map((r) => r.id + r.color + r.label + (r.members ? ":" + r.members.join(",") : "")).join("|");
  const grouped = runs.some((r) => r.members);
  const band = props.band ?? "minmax";

  // Group lines: every member's series, a few requests for all of them.
  const [groupData, setGroupData] = useState<Map<string, Series | null> | null>(null);
  const [groupGen, setGroupGen] = useState(0);
  const memberIds = grouped ? [...new Set(runs.flatMap((r) => r.members ?? []))] : [];
  // New points in a member run (the dashboard watches the running ones): read the group again, at most every few seconds.
  const liveTimer = useRef<number | undefined>(undefined);
  useLive(
    "scalars",
    (e) => {
      if (!grouped || e.name !== metric || !memberIds.includes(e.run) || liveTimer.current !== undefined) return;
      liveTimer.current = window.setTimeout(() => {
        liveTimer.current = undefined;
        setGroupGen((g) => g + 1);
      }, 3000);
    },
    [runKey, metric, grouped],
  );
  useEffect(() => () => window.clearTimeout(liveTimer.current), []);
  useEffect(() => {
    if (!grouped) {
      setGroupData(null);
      return;
    }
    const ids = [...new Set(runs.flatMap((r) => r.members ?? []))];
    const ctl = new AbortController();
    const chunks: string[][] = [];
    for (let i = 0; i < ids.length; i += 200) chunks.push(ids.slice(i, i + 200));
    Promise.all(chunks.map((c) => fetchScalarsMany(c, metric, 500, xAxis === "step" ? "step" : "time", ctl.signal)))
      .then((parts) => {
        const all = new Map<string, Series | null>();
        for (const part of parts) for (const [k, v] of part) all.set(k, v);
        setGroupData(all);
        setError([...all.values()].some(Boolean) ? null : "no data for this metric");
      })
      .catch((e) => {
        if (!ctl.signal.aborted) setError(e instanceof Error ? e.message : String(e));
      });
    return () => ctl.abort();
  }, [runKey, metric, xAxis, grouped, groupGen]);

  // Load each run's series and re-render when the live stream appends to one.
  useEffect(() => {
    if (grouped) return;
    let alive = true;
    const bump = () => alive && setVersion((v) => v + 1);
    const unsubs = runs.map((r) => seriesStore.subscribe(r.id, metric, bump));
    Promise.all(runs.map((r) => seriesStore.load(r.id, metric).catch(() => null))).then((all) => {
      if (!alive) return;
      if (all.every((s) => s === null) && runs.length) setError("no data for this metric");
      bump();
    });
    return () => {
      alive = false;
      unsubs.forEach((u) => u());
    };
  }, [runKey, metric]);

  // Full view: what the store holds. Zoomed: the visible range at full resolution.
  const t0s = useRef(new Map<string, number>());
  const prepared = useMemo(() => {
    const out: Prepared[] = [];
    if (grouped) {
      if (!groupData) return out;
      const smooth = (x: number[], v: number[]) => (smoothing > 0 ? ema(x, v, smoothing) : v);
      for (const r of runs) {
        const parts = (r.members ?? []).map((id) => groupData.get(id)).filter((x): x is Series => Boolean(x));
        if (!parts.length) continue;
        const lines = parts.map((s) => {
          const p = prepare(r, s, xAxis, 0);
          return { x: p.x, y: p.raw };
        });
        const a = aggregate(lines, band);
        out.push({ run: r, x: a.x, raw: a.mean, y: smooth(a.x, a.mean), lo: smooth(a.x, a.lo), hi: smooth(a.x, a.hi), t0: 0, runs: parts.length });
      }
      return out;
    }
    for (const r of runs) {
      const full = seriesStore.peek(r.id, metric);
      if (!full) continue;
      const t0 = full.time.length ? full.time[0] : 0;
      t0s.current.set(r.id, t0);
      const s = zoomData?.get(r.id) ?? full;
      out.push(prepare(r, s, xAxis, smoothing, t0));
    }
    return out;
  }, [version, runKey, metric, xAxis, smoothing, zoomData, groupData, band]);

  const built = useMemo(() => build(prepared, smoothing, logY), [prepared, smoothing, logY]);
  builtRef.current = built;

  // Zoom: ask the server for the visible range of every run.
  useEffect(() => {
    // Group lines are zoomed in the browser: their runs were read at the group's resolution.
    if (!zoom || grouped) {
      setZoomData(null);
      return;
    }
    const ctl = new AbortController();
    const t = window.setTimeout(() => {
      Promise.all(
        runs.map(async (r) => {
          const t0 = t0s.current.get(r.id) ?? 0;
          const q =
            xAxis === "step"
              ? { x: "step" as const, xmin: Math.floor(zoom.min), xmax: Math.ceil(zoom.max) }
              : xAxis === "time"
                ? { x: "time" as const, xmin: zoom.min, xmax: zoom.max }
                : { x: "time" as const, xmin: zoom.min + t0, xmax: zoom.max + t0 };
          const s = await fetchScalars(r.id, metric, { ...q, points: 2000 }, ctl.signal);
          return [r.id, s] as const;
        }),
      )
        .then((pairs) => setZoomData(new Map(pairs)))
        .catch(() => undefined);
    }, 150);
    return () => {
      window.clearTimeout(t);
      ctl.abort();
    };
  }, [zoom, runKey, metric, xAxis]);

  useEffect(() => {
    setZoom(null);
  }, [xAxis, metric]);

  // Create or update the uPlot instance.
  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const width = Math.max(200, el.clientWidth);
    const colors = canvasColors(dark);
    if (plot.current && structure.current === built.structure + xAxis + dark) {
      const z = zoomRef.current;
      plot.current.setData(built.data, !z);
      if (z) plot.current.setScale("x", z);
      return;
    }
    plot.current?.destroy();
    structure.current = built.structure + xAxis + dark;
    const opts: uPlot.Options = {
      width,
      height,
      legend: { show: false },
      series: built.series,
      bands: built.bands,
      scales: {
        x: { time: xAxis === "time" },
        y: { distr: logY ? 3 : 1 },
      },
      axes: [
        {
          stroke: colors.axis,
          grid: { stroke: colors.grid },
          ticks: { stroke: colors.ticks },
          // Steps are integers with thousands separators at any zoom (never 6.9001e+5).
          ...(xAxis === "step" ? { incrs: STEP_INCRS, space: 70 } : {}),
          values:
            xAxis === "relative"
              ? (_u, splits, _i, _space, incr) => splits.map((v) => fmtRelative(v, incr))
              : xAxis === "step"
                ? (_u, splits) => splits.map(fmtStep)
                : undefined,
        },
        {
          stroke: colors.axis,
          grid: { stroke: colors.grid },
          ticks: { stroke: colors.ticks },
          // Units make labels longer ("44.80 MB"): the axis grows to its longest label.
          size: (_u, values) => Math.max(48, 20 + 7 * Math.max(0, ...(values ?? []).map((v) => String(v).length))),
          values: (_u, splits) => ticksY(splits),
        },
      ],
      focus: { alpha: 0.25 },
      cursor: {
        focus: { prox: 24 },
        drag: { x: true, y: false, setScale: true },
        points: { show: false },
        bind: {
          dblclick: () => () => {
            setZoom(null);
            return null;
          },
        },
      },
      hooks: {
        setSelect: [
          (u) => {
            if (u.select.width > 4) {
              const min = u.posToVal(u.select.left, "x");
              const max = u.posToVal(u.select.left + u.select.width, "x");
              setZoom({ min, max });
            }
          },
        ],
        // The line nearest the cursor is the hovered run: highlighted here, in the other
        // charts and in the table. A run's raw or envelope series stands for its main line.
        setSeries: [
          (u, idx, o) => {
            if ((o as { focus?: boolean }).focus === undefined) return;
            const b = builtRef.current;
            const run = idx === null || !b ? null : b.owner[idx] ?? null;
            const m = run !== null ? b!.main.get(run) : undefined;
            if (m !== undefined && m !== idx) u.setSeries(m, { focus: true }, false);
            onHover.current?.(run);
          },
        ],
        setCursor: [
          (u) => {
            // The read-out is at the data point nearest the cursor (a step that was logged).
            const left = u.cursor.left;
            const idx = u.cursor.idx;
            setCursorX(left === undefined || left < 0 || idx === null || idx === undefined ? null : (u.data[0][idx] as number));
          },
        ],
      },
    };
    plot.current = new uPlot(opts, built.data, el);
    const z = zoomRef.current;
    if (z) plot.current.setScale("x", z);
  }, [built, xAxis, height, ticksY, dark]);

  // Highlight from outside (the table, another chart): focus that run's line, dim the rest.
  const highlight = props.highlight ?? null;
  useEffect(() => {
    const u = plot.current;
    if (!u) return;
    const m = highlight !== null ? built.main.get(highlight) : undefined;
    u.setSeries(m ?? null, { focus: true }, false);
  }, [highlight, built]);

  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const ro = new ResizeObserver(() => {
      if (plot.current) plot.current.setSize({ width: Math.max(200, el.clientWidth), height });
    });
    ro.observe(el);
    return () => ro.disconnect();
  }, [height]);

  useEffect(() => () => plot.current?.destroy(), []);

  const anyDownsampled = !grouped && prepared.some((p) => p.lo);
  const lastStep = prepared.reduce<number | null>((a, p) => (p.x.length ? Math.max(a ?? -Infinity, p.x[p.x.length - 1]) : a), null);
  return (
    <div
      class={`chart${props.wide ? " wide" : ""}`}
      data-metric={metric}
      data-runs={prepared.length}
      data-points={prepared.reduce((a, p) => a + p.x.length, 0)}
      data-xmax={prepared.reduce((a, p) => Math.max(a, p.x.length ? p.x[p.x.length - 1] : -Infinity), -Infinity)}
      data-zoomed={zoom ? "1" : "0"}
    >
      <div class="chart-head">
        <span class="chart-title" title={metric}>{isSystemMetric(metric) ? metric.replace(/(^|\/)system\//, "$1") : metric}</span>
        {xAxis === "step" && lastStep !== null && (
          <span class="chart-step muted" data-testid="last-step" title="the last step of the charted runs">step {fmtStep(lastStep)}</span>
        )}
        {grouped && (
          <span class="badge" data-testid="band-badge" title="each line is a group's mean; the band is its runs' spread">
            {band === "std" ? "mean ± std" : "mean, min – max"}
          </span>
        )}
        {anyDownsampled && <span class="badge" title="downsampled by the server; the band is the min/max of each bucket">envelope</span>}
        {zoom && (
          <button class="small" onClick={() => setZoom(null)} title="show the whole series (or double-click the chart)">
            reset zoom
          </button>
        )}
        {props.onWide && (
          <button
            class="small panel-wide" data-testid="wide" aria-pressed={Boolean(props.wide)} onClick={props.onWide}
            title={props.wide ? "back to the grid" : "draw this panel across the whole width"}
          >
            {props.wide ? "⇲ grid" : "⇱ full width"}
          </button>
        )}
      </div>
      <div class="chart-plot" ref={box} style={{ height: `${height}px` }} />
      {error && !prepared.length && <div class="muted">{error}</div>}
      <div class="chart-legend">
        {cursorX !== null && <span class="legend-x">{xAxis === "step" ? "step " : ""}{fmtX(cursorX, xAxis)}</span>}
        {prepared.map((p) => {
          const i = cursorX !== null ? indexAt(p, cursorX) : p.y.length ? p.y.length - 1 : undefined;
          const v = i === undefined ? undefined : p.y[i];
          const raw = i === undefined ? undefined : p.raw[i];
          return (
            <span
              class={`legend-item${highlight === p.run.id ? " hovered" : highlight !== null ? " dim" : ""}`}
              key={p.run.id} data-run={p.run.id}
              onMouseEnter={() => props.onHover?.(p.run.id)} onMouseLeave={() => props.onHover?.(null)}
            >
              <span class="swatch" style={{ background: p.run.color }} data-color={p.run.color} />
              <span class="legend-label">{p.run.label}</span>
              {p.runs !== undefined && <span class="legend-count muted" data-testid="legend-count">({p.runs} run{p.runs === 1 ? "" : "s"})</span>}
              <span class="legend-value" title={smoothing > 0 ? "smoothed" : undefined}>{v === undefined ? "–" : fmtY(v)}</span>
              {smoothing > 0 && <span class="legend-raw" title="raw value">raw {raw === undefined ? "–" : fmtY(raw)}</span>}
            </span>
          );
        })}
      </div>
    </div>
  );
}
