// The chart grid: one panel per metric, every given run overlaid, with shared controls.
import type { ComponentChildren } from "preact";
import { useEffect, useMemo, useState } from "preact/hooks";
import { fetchRun, RunDetail } from "./api";
import { Chart, ChartRun, XAxis } from "./chart";
import { isSystemMetric } from "./format";
import { useLive, useWatch } from "./live";
import { seriesStore } from "./series";
import { Picker } from "./widgets";
import type { Band } from "./groups";

export interface ChartSettings {
  smoothing: number;
  xAxis: XAxis;
  logY: boolean;
  metrics: string[]; // empty: all
  /** Panels whose name matches this regular expression (empty: all). */
  panels: string;
  /** Panels drawn across the whole width. */
  wide: string[];
  /** A group line's band: min to max of its runs, or mean ± one standard deviation. */
  band: Band;
}

export function ChartControls(props: {
  settings: ChartSettings;
  available: string[];
  onChange: (s: Partial<ChartSettings>) => void;
  /** How many runs of the view are charted (the dashboard only). */
  count?: number;
  onCount?: (n: number) => void;
  /** Group lines are drawn (group-by is set): the band can be chosen. */
  grouped?: boolean;
}) {
  const { smoothing, xAxis, logY, metrics } = props.settings;
  return (
    <div class="chart-controls">
      {props.onCount && (
        <label class="chart-count" title={props.grouped ? "the first groups of the table are charted, each as one line" : "the first runs of the table's filter and sort are charted; ticked runs always are"}>
          chart the first
          <input
            type="number" min="0" max="100" step="1" value={props.count} data-testid="chart-n"
            onChange={(e) => {
              const v = Math.round(Number((e.target as HTMLInputElement).value));
              if (Number.isFinite(v)) props.onCount!(Math.min(100, Math.max(0, v)));
            }}
          />
          {props.grouped ? "groups" : "runs"}
        </label>
      )}
      {props.grouped && (
        <label title="the band around each group's mean line">
          band
          <select value={props.settings.band} data-testid="band" onChange={(e) => props.onChange({ band: (e.target as HTMLSelectElement).value as Band })}>
            <option value="minmax">min – max</option>
            <option value="std">± std</option>
          </select>
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
      <PanelSearch value={props.settings.panels} onChange={(panels) => props.onChange({ panels })} />
      <Picker
        label="metrics"
        testid="metric-picker"
        options={props.available.map((m) => ({ value: m }))}
        selected={metrics}
        onChange={(m) => props.onChange({ metrics: m })}
      />
      <span class="muted hint" title="drag on a chart to zoom, double-click it to reset">drag: zoom · double-click: reset</span>
    </div>
  );
}

/** The panel search box: a regular expression over panel names, applied as you type. */
function PanelSearch(props: { value: string; onChange: (v: string) => void }) {
  const [draft, setDraft] = useState(props.value);
  useEffect(() => setDraft(props.value), [props.value]);
  useEffect(() => {
    if (draft === props.value) return;
    const t = window.setTimeout(() => props.onChange(draft), 200);
    return () => window.clearTimeout(t);
  }, [draft]);
  const bad = panelFilter(draft).error;
  return (
    <input
      type="search" class={`panel-search mono${bad ? " invalid" : ""}`} placeholder="panels: regex, e.g. ^val/|loss"
      value={draft} data-testid="panel-search" title={bad ? `not a regular expression (${bad}): matched as plain text` : "show the panels whose name matches"}
      onInput={(e) => setDraft((e.target as HTMLInputElement).value)}
    />
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

const SECTION_OPEN_KEY = "labtrack.sectionsClosed";

/** The section a panel belongs to: its name's first part (train/loss: train), "system" for
 *  the machine's series (also rank<N>/system/...), "other" for names without a prefix. */
export function sectionOf(metric: string): string {
  if (isSystemMetric(metric)) return "system";
  const i = metric.indexOf("/");
  return i > 0 ? metric.slice(0, i) : "other";
}

/** The panel filter: a case-insensitive regular expression, or plain text when it is not
 *  one (`error` says why); empty matches everything. */
export function panelFilter(q: string): { test: (m: string) => boolean; error: string | null } {
  if (!q) return { test: () => true, error: null };
  try {
    const re = new RegExp(q, "i");
    return { test: (m) => re.test(m), error: null };
  } catch (e) {
    const low = q.toLowerCase();
    return { test: (m) => m.toLowerCase().includes(low), error: e instanceof Error ? e.message : String(e) };
  }
}

function closedSections(): Set<string> {
  try {
    return new Set(JSON.parse(window.localStorage.getItem(SECTION_OPEN_KEY) ?? "[]") as string[]);
  } catch {
    return new Set();
  }
}

export function ChartGrid(props: {
  runs: ChartRun[];
  metrics: string[];
  settings: ChartSettings;
  has: (run: string, metric: string) => boolean;
  height?: number;
  highlight?: string | null;
  onHover?: (run: string | null) => void;
  onWide?: (metric: string) => void;
  empty?: string;
}) {
  const [closed, setClosed] = useState(closedSections);
  if (!props.runs.length) return <div class="empty">{props.empty ?? "Select runs in the table to chart them."}</div>;
  if (!props.metrics.length) return <div class="empty">These runs have logged no scalars yet.</div>;
  const filter = panelFilter(props.settings.panels);
  const shown = props.metrics.filter(filter.test);
  if (!shown.length) return <div class="empty" data-testid="no-panels">No panel matches {props.settings.panels}.</div>;
  const wide = new Set(props.settings.wide);
  const sections = new Map<string, string[]>();
  for (const m of shown) {
    const k = sectionOf(m);
    sections.set(k, [...(sections.get(k) ?? []), m]);
  }
  // The run's own sections by name, then "other", section timings, the machine's last.
  const order = [...sections.keys()].sort((a, b) => {
    const rank = (k: string) => (k === "system" ? 3 : k === "timings" ? 2 : k === "other" ? 1 : 0);
    return rank(a) - rank(b) || a.localeCompare(b);
  });
  const toggle = (k: string, open: boolean) => {
    const next = new Set(closed);
    if (open) next.delete(k);
    else next.add(k);
    setClosed(next);
    try {
      window.localStorage.setItem(SECTION_OPEN_KEY, JSON.stringify([...next]));
    } catch {
      // private mode: the choice lasts this page only
    }
  };
  const chart = (m: string) => (
    <Chart
      key={m}
      metric={m}
      runs={props.runs.filter((r) => props.has(r.id, m))}
      smoothing={props.settings.smoothing}
      xAxis={props.settings.xAxis}
      logY={props.settings.logY}
      band={props.settings.band}
      height={props.height ?? (wide.has(m) ? 300 : undefined)}
      highlight={props.highlight}
      onHover={props.onHover}
      wide={wide.has(m)}
      onWide={props.onWide ? () => props.onWide!(m) : undefined}
    />
  );
  return (
    <div>
      {order.map((k) => (
        <ChartSection
          key={k} name={k} count={sections.get(k)!.length} open={!closed.has(k)} onToggle={(o) => toggle(k, o)}
          render={() => sections.get(k)!.map(chart)}
        />
      ))}
    </div>
  );
}

/** One section of panels (train, val, system, ...), collapsible; its charts are only made
 *  (and their data fetched) while it is open. */
function ChartSection(props: { name: string; count: number; open: boolean; onToggle: (open: boolean) => void; render: () => ComponentChildren }) {
  const system = props.name === "system";
  return (
    <details
      class="chart-section" data-section={props.name} data-testid={system ? "system-section" : "chart-section"} open={props.open}
      onToggle={(e) => {
        const now = (e.currentTarget as HTMLDetailsElement).open;
        if (now !== props.open) props.onToggle(now);
      }}
    >
      <summary>
        {props.name} <span class="count">{props.count}</span>
        {system && <span class="muted hint">CPU, memory, disk, network and GPUs, sampled by labtrack; x is seconds since the run started</span>}
      </summary>
      {props.open && <div class="chart-grid" data-testid={system ? "system-grid" : "chart-grid"}>{props.render()}</div>}
    </details>
  );
}
