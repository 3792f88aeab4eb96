// The chart grid: one panel per metric, every given run overlaid, with shared controls.
import type { ComponentChildren } from "preact";
import { useEffect, useMemo, useState } from "preact/hooks";
import { fetchRun, RunDetail } from "./api";
import { Chart, ChartRun, XAxis } from "./chart";
import { isSystemMetric } from "./format";
import { useLive, useWatch } from "./live";
import { seriesStore } from "./series";
import { Picker } from "./widgets";

export interface ChartSettings {
  smoothing: number;
  xAxis: XAxis;
  logY: boolean;
  metrics: string[]; // empty: all
}

export function ChartControls(props: {
  settings: ChartSettings;
  available: string[];
  onChange: (s: Partial<ChartSettings>) => void;
  /** How many runs of the view are charted (the dashboard only). */
  count?: number;
  onCount?: (n: number) => void;
}) {
  const { smoothing, xAxis, logY, metrics } = props.settings;
  return (
    <div class="chart-controls">
      {props.onCount && (
        <label class="chart-count" title="the first runs of the table's filter and sort are charted; ticked runs always are">
          chart the first
          <input
            type="number" min="0" max="100" step="1" value={props.count} data-testid="chart-n"
            onChange={(e) => {
              const v = Math.round(Number((e.target as HTMLInputElement).value));
              if (Number.isFinite(v)) props.onCount!(Math.min(100, Math.max(0, v)));
            }}
          />
          runs
        </label>
      )}
      <label title="exponential moving average">
        smoothing
        <input
          type="range" min="0" max="0.99" step="0.01" value={smoothing} data-testid="smoothing"
          onInput={(e) => props.onChange({ smoothing: Number((e.target as HTMLInputElement).value) })}
        />
        <span class="mono">{smoothing.toFixed(2)}</span>
      </label>
      <label>
        x axis
        <select value={xAxis} data-testid="xaxis" onChange={(e) => props.onChange({ xAxis: (e.target as HTMLSelectElement).value as XAxis })}>
          <option value="step">step</option>
          <option value="time">wall time</option>
          <option value="relative">relative time</option>
        </select>
      </label>
      <label>
        <input type="checkbox" checked={logY} data-testid="logy" onChange={(e) => props.onChange({ logY: (e.target as HTMLInputElement).checked })} />
        log scale
      </label>
      <Picker
        label="metrics"
        testid="metric-picker"
        options={props.available.map((m) => ({ value: m }))}
        selected={metrics}
        onChange={(m) => props.onChange({ metrics: m })}
      />
      <span class="muted hint">drag on a chart to zoom · double-click to reset</span>
    </div>
  );
}

/** Loads run details (labels, metric names) and keeps them fresh while runs change. A run
 *  already loaded is not fetched again when the set changes (the live stream keeps it fresh). */
export function useRunDetails(ids: string[]): Map<string, RunDetail> {
  const [details, setDetails] = useState(new Map<string, RunDetail>());
  const key = ids.join(",");
  useEffect(() => {
    let alive = true;
    const missing = ids.filter((id) => !details.has(id));
    if (!missing.length) return;
    Promise.all(missing.map((id) => fetchRun(id).catch(() => null))).then((all) => {
      if (!alive) return;
      setDetails((old) => {
        const m = new Map(old);
        all.forEach((d) => d && m.set(d.id, d));
        return m;
      });
    });
    return () => {
      alive = false;
    };
  }, [key]);
  useWatch(ids);
  // A new series in a watched run: fetch the run again so the panel appears.
  useEffect(
    () =>
      seriesStore.onNewName((run, name) => {
        if (!ids.includes(run)) return;
        setDetails((old) => {
          const d = old.get(run);
          if (!d || d.summary[name]) return old;
          const next = new Map(old);
          next.set(run, { ...d, summary: { ...d.summary, [name]: { last: NaN, min: NaN, max: NaN, count: 0, step: 0, time: 0 } } });
          return next;
        });
      }),
    [key],
  );
  useLive(
    "run",
    (row) => {
      if (!ids.includes(row.id)) return;
      setDetails((old) => {
        const d = old.get(row.id);
        if (!d) return old;
        const next = new Map(old);
        next.set(row.id, { ...d, status: row.status, ended: row.ended, name: row.name, comment: row.comment, tags: row.tags });
        return next;
      });
    },
    [key],
  );
  return useMemo(() => {
    const m = new Map<string, RunDetail>();
    for (const id of ids) {
      const d = details.get(id);
      if (d) m.set(id, d);
    }
    return m;
  }, [details, key]);
}

export function metricNames(details: Iterable<RunDetail>): string[] {
  const s = new Set<string>();
  for (const d of details) for (const k of runMetrics(d)) s.add(k);
  return sortMetrics(s);
}

/** A run's series: summary.json's, and those logged before the summary was written. */
export function runMetrics(d: RunDetail): string[] {
  return [...Object.keys(d.summary), ...(d.names?.scalars ?? [])];
}

/** Metrics by name, section timings after the run's own, system series last. */
export function sortMetrics(names: Iterable<string>): string[] {
  const rank = (m: string) => (isSystemMetric(m) ? 2 : m.startsWith("timings/") ? 1 : 0);
  return [...new Set(names)].sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
}

/** The run's own metrics (the first `limit` of them) and then every system series. */
export function limitOwn(metrics: string[], limit: number): string[] {
  const own = metrics.filter((m) => !isSystemMetric(m));
  return [...own.slice(0, limit), ...metrics.filter(isSystemMetric)];
}

const SYSTEM_OPEN_KEY = "labtrack.systemOpen";

export function ChartGrid(props: {
  runs: ChartRun[];
  metrics: string[];
  settings: ChartSettings;
  has: (run: string, metric: string) => boolean;
  height?: number;
  highlight?: string | null;
  onHover?: (run: string | null) => void;
  empty?: string;
}) {
  if (!props.runs.length) return <div class="empty">{props.empty ?? "Select runs in the table to chart them."}</div>;
  if (!props.metrics.length) return <div class="empty">These runs have logged no scalars yet.</div>;
  const own = props.metrics.filter((m) => !isSystemMetric(m));
  const system = props.metrics.filter(isSystemMetric);
  const chart = (m: string) => (
    <Chart
      key={m}
      metric={m}
      runs={props.runs.filter((r) => props.has(r.id, m))}
      smoothing={props.settings.smoothing}
      xAxis={props.settings.xAxis}
      logY={props.settings.logY}
      height={props.height}
      highlight={props.highlight}
      onHover={props.onHover}
    />
  );
  return (
    <div>
      {own.length > 0 && <div class="chart-grid" data-testid="chart-grid">{own.map(chart)}</div>}
      {system.length > 0 && <SystemSection count={system.length} render={() => system.map(chart)} />}
    </div>
  );
}

/** The machine's series (CPU, memory, disk, network, GPUs) in their own collapsible section;
 *  its charts are only made (and their data fetched) while it is open. */
function SystemSection(props: { count: number; render: () => ComponentChildren }) {
  const [open, setOpen] = useState(() => {
    try {
      return window.localStorage.getItem(SYSTEM_OPEN_KEY) !== "0";
    } catch {
      return true;
    }
  });
  const toggle = (e: Event) => {
    const now = (e.currentTarget as HTMLDetailsElement).open;
    setOpen(now);
    try {
      window.localStorage.setItem(SYSTEM_OPEN_KEY, now ? "1" : "0");
    } catch {
      // private mode: the choice lasts this page only
    }
  };
  return (
    <details class="chart-section" data-testid="system-section" open={open} onToggle={toggle}>
      <summary>
        system <span class="count">{props.count}</span>
        <span class="muted hint">CPU, memory, disk, network and GPUs, sampled by labtrack; x is seconds since the run started</span>
      </summary>
      {open && <div class="chart-grid" data-testid="system-grid">{props.render()}</div>}
    </details>
  );
}
