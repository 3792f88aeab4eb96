// The first view: the runs table above the charts of the selected runs.
import { useEffect, useMemo, useState } from "preact/hooks";
import { Columns, fetchColumns, fetchRuns } from "./api";
import { useLive, useWatch } from "./live";
import { runColors } from "./colors";
import { ChartControls, ChartGrid, ChartSettings, limitOwn, metricNames, useRunDetails } from "./charts";
import { TagTicked } from "./edit";
import { XAxis } from "./chart";
import { listParam, navigate, Route, updateParams } from "./route";
import { GroupSegment, groupValue, RunsTable, TableState } from "./runstable";
import { Picker } from "./widgets";
import { Scatter, scatterSettingsFrom } from "./scatter";
import { MediaAcrossRuns } from "./mediaruns";
import { brushesFrom, describeBrush, ParallelCoordinates, withBrushes } from "./parcoords";

/** How many runs of the current view are charted unless asked otherwise. */
export const DEFAULT_CHARTED = 10;
export const MAX_CHARTED = 100; // the table's first page

/** `n` in the URL: the first n runs of the view are charted (0: only the ticked runs). */
export function chartedCount(p: URLSearchParams): number {
  const v = p.get("n");
  if (v === null || v === "") return DEFAULT_CHARTED;
  const n = Math.round(Number(v));
  return Number.isFinite(n) ? Math.min(MAX_CHARTED, Math.max(0, n)) : DEFAULT_CHARTED;
}

/** The charted runs: the first `n` of the view, then the ticked (pinned) ones, minus hidden. */
export function chartedRuns(first: string[], n: number, pinned: string[], hidden: string[]): string[] {
  const hide = new Set(hidden);
  return [...new Set([...first.slice(0, n), ...pinned])].filter((id) => !hide.has(id));
}

export function chartSettingsFrom(p: URLSearchParams): ChartSettings {
  const x = p.get("x");
  const sm = Number(p.get("smooth") ?? "0");
  return {
    smoothing: Number.isFinite(sm) ? Math.min(0.99, Math.max(0, sm)) : 0,
    xAxis: x === "time" || x === "relative" ? (x as XAxis) : "step",
    logY: p.get("log") === "1",
    metrics: listParam(p, "metrics"),
    panels: p.get("panels") ?? "",
    band: p.get("band") === "std" ? "std" : "minmax",
    wide: listParam(p, "wide"),
  };
}

/** The URL change that toggles a panel's full width. */
export function toggleWide(settings: ChartSettings, metric: string): Record<string, string | null> {
  const wide = settings.wide.includes(metric) ? settings.wide.filter((m) => m !== metric) : [...settings.wide, metric];
  return chartSettingsTo({ wide });
}

export function chartSettingsTo(s: Partial<ChartSettings>): Record<string, string | null> {
  const out: Record<string, string | null> = {};
  if (s.smoothing !== undefined) out.smooth = s.smoothing ? String(s.smoothing) : null;
  if (s.xAxis !== undefined) out.x = s.xAxis === "step" ? null : s.xAxis;
  if (s.logY !== undefined) out.log = s.logY ? "1" : null;
  if (s.metrics !== undefined) out.metrics = s.metrics.length ? s.metrics.join(",") : null;
  if (s.panels !== undefined) out.panels = s.panels || null;
  if (s.wide !== undefined) out.wide = s.wide.length ? s.wide.join(",") : null;
  if (s.band !== undefined) out.band = s.band === "std" ? "std" : null;
  return out;
}

export function runLabels(ids: string[], names: Map<string, string | null | undefined>): Map<string, string> {
  const count = new Map<string, number>();
  for (const id of ids) {
    const n = names.get(id) || id;
    count.set(n, (count.get(n) ?? 0) + 1);
  }
  const out = new Map<string, string>();
  for (const id of ids) {
    const n = names.get(id) || id;
    out.set(id, (count.get(n) ?? 0) > 1 && n !== id ? `${n} · ${id.slice(-6)}` : n);
  }
  return out;
}

/** Runs of the view read for group lines: more are drawn as they are, and left out past it. */
const VIEW_LIMIT = 10_000;

interface ViewGroups {
  segments: GroupSegment[];
  members: Map<string, string[]>;
  groupOf: Map<string, string>;
  running: Set<string>;
}

/** The view's groups in the table's order (each a block of rows, as the server sorts by the
 *  group), with their runs; fetched again when runs appear or vanish. */
export function groupsOf(rows: { id: string; key: string; running?: boolean }[]): ViewGroups {
  const segments: GroupSegment[] = [];
  const members = new Map<string, string[]>();
  const groupOf = new Map<string, string>();
  const seen = new Map<string, number>();
  const running = new Set(rows.filter((r) => r.running).map((r) => r.id));
  let cur: GroupSegment | null = null;
  rows.forEach((r, i) => {
    if (!cur || cur.label !== r.key) {
      // the same value in two blocks (values that print alike) stays two groups
      const n = seen.get(r.key) ?? 0;
      seen.set(r.key, n + 1);
      cur = { key: n ? `${r.key}#${n + 1}` : r.key, label: r.key, start: i, count: 0 };
      segments.push(cur);
      members.set(cur.key, []);
    }
    cur.count++;
    members.get(cur.key)!.push(r.id);
    groupOf.set(r.id, cur.key);
  });
  return { segments, members, groupOf, running };
}

function useViewGroups(state: TableState): ViewGroups | null {
  const [groups, setGroups] = useState<ViewGroups | null>(null);
  const [gen, setGen] = useState(0);
  const { q, where, group } = state;
  useEffect(() => {
    if (!group) {
      setGroups(null);
      return;
    }
    const ctl = new AbortController();
    fetchRuns({ offset: 0, limit: VIEW_LIMIT, sort: group, q, where }, ctl.signal)
      .then((page) => setGroups(groupsOf(page.runs.map((r) => ({ id: r.id, key: groupValue(r, group), running: r.status === "running" })))))
      .catch(() => undefined);
    return () => ctl.abort();
  }, [q, where, group, gen]);
  useLive("runs", () => setGen((g) => g + 1), []);
  return groups;
}

export function Dashboard({ route }: { route: Route }) {
  const p = route.params;
  const state: TableState = {
    q: p.get("q") ?? "",
    where: p.get("where") ?? "",
    sort: p.get("sort") ?? "-started",
    cols: listParam(p, "cols"),
    group: p.get("group") ?? "",
    sel: listParam(p, "sel"),
  };
  // Brushes on the parallel coordinates narrow the view: the table, the charts and the
  // scatter read the runs of `where` and every brush.
  const brushes = brushesFrom(p);
  const view: TableState = { ...state, where: withBrushes(state.where, brushes) };
  const settings = chartSettingsFrom(p);
  const [columns, setColumns] = useState<Columns>({ params: [], metrics: [], experiments: [] });
  const [qDraft, setQDraft] = useState(state.q);
  const [whereDraft, setWhereDraft] = useState(state.where);
  useEffect(() => setQDraft(state.q), [state.q]);
  useEffect(() => setWhereDraft(state.where), [state.where]);
  useEffect(() => {
    fetchColumns().then(setColumns).catch(() => undefined);
  }, []);
  // Free text filters as you type (debounced); `where` applies on Enter.
  useEffect(() => {
    if (qDraft === state.q) return;
    const t = window.setTimeout(() => updateParams({ q: qDraft || null }), 250);
    return () => window.clearTimeout(t);
  }, [qDraft]);

  // Keys: `/` searches, `c` compares the ticked runs, Esc leaves the box and closes pickers.
  useEffect(() => {
    const on = (e: KeyboardEvent) => {
      if (e.ctrlKey || e.metaKey || e.altKey) return;
      const t = e.target as HTMLElement | null;
      const box = t?.tagName === "INPUT" && !["checkbox", "radio", "range", "button"].includes((t as HTMLInputElement).type);
      const typing = t && (box || t.tagName === "TEXTAREA" || t.tagName === "SELECT" || t.isContentEditable);
      if (e.key === "Escape") {
        if (typing) t!.blur();
        document.querySelectorAll("details.picker[open]").forEach((d) => d.removeAttribute("open"));
        return;
      }
      if (typing) return;
      if (e.key === "/") {
        e.preventDefault();
        (document.querySelector('[data-testid="filter"]') as HTMLInputElement | null)?.focus();
      } else if (e.key === "c") {
        const sel = listParam(new URLSearchParams(location.hash.split("?")[1] ?? ""), "sel");
        if (sel.length >= 2) navigate("/compare", { runs: sel.join(",") });
      }
    };
    window.addEventListener("keydown", on);
    return () => window.removeEventListener("keydown", on);
  }, []);

  const setState = (s: Partial<TableState>) => {
    const out: Record<string, string | null> = {};
    if (s.q !== undefined) out.q = s.q || null;
    if (s.where !== undefined) out.where = s.where || null;
    if (s.sort !== undefined) out.sort = s.sort === "-started" ? null : s.sort;
    if (s.cols !== undefined) out.cols = s.cols.length ? s.cols.join(",") : null;
    if (s.group !== undefined) out.group = s.group || null;
    if (s.sel !== undefined) out.sel = s.sel.length ? s.sel.join(",") : null;
    updateParams(out);
  };

  const n = chartedCount(p);
  const hidden = listParam(p, "hide");
  const [first, setFirst] = useState<string[]>([]);
  const [hover, setHover] = useState<string | null>(null);
  // With group-by, each of the first n groups is one line (the mean of its runs, but the
  // hidden ones) with a band; else the first n runs and the ticked ones, but the hidden.
  const groups = useViewGroups(view);
  const grouped = Boolean(state.group && groups);
  const hiddenSet = new Set(hidden);
  const chartedGroups = grouped ? groups!.segments.slice(0, n) : [];
  const charted = grouped ? chartedGroups.map((g) => "group:" + g.key) : chartedRuns(first, n, state.sel, hidden);
  const chartedKey = charted.join(",");
  const memberOf = (g: GroupSegment) => (groups!.members.get(g.key) ?? []).filter((id) => !hiddenSet.has(id));
  // A group's panels are those of its first runs.
  const detailIds = grouped ? chartedGroups.map((g) => memberOf(g)[0]).filter(Boolean) : charted;
  const details = useRunDetails(detailIds);
  // A group's running runs are followed live: their new points redraw its line.
  useWatch(grouped ? chartedGroups.flatMap((g) => memberOf(g)).filter((id) => groups!.running.has(id)) : []);
  const colors = useMemo(() => runColors(charted), [chartedKey]);
  const names = new Map([...details.values()].map((d) => [d.id, d.name]));
  const labels = runLabels(charted, names);
  const chartRuns = grouped
    ? chartedGroups.map((g) => ({ id: "group:" + g.key, label: g.label, color: colors.get("group:" + g.key)!, members: memberOf(g) }))
    : charted.filter((id) => details.has(id)).map((id) => ({ id, label: labels.get(id) ?? id, color: colors.get(id)! }));
  // The table's marks: a run's own colour, or its group's while the group is charted.
  const rowColors = useMemo(() => {
    if (!grouped) return colors;
    const m = new Map<string, string>();
    for (const g of chartedGroups) for (const id of memberOf(g)) m.set(id, colors.get("group:" + g.key)!);
    return m;
  }, [grouped, colors, groups, hidden.join(",")]);
  const segments = grouped
    ? groups!.segments.map((g) => ({ ...g, color: colors.get("group:" + g.key) }))
    : undefined;
  const lineOf = (id: string) => (grouped ? "group:" + (groups!.groupOf.get(id) ?? "") : id);
  const onEye = (id: string, show: boolean) => {
    const hide = hidden.filter((x) => x !== id);
    if (!show) hide.push(id);
    const out: Record<string, string | null> = { hide: hide.length ? hide.join(",") : null };
    // Showing a run the view does not chart by itself pins it, as ticking does.
    if (!grouped && show && !first.slice(0, n).includes(id) && !state.sel.includes(id)) out.sel = [...state.sel, id].join(",");
    updateParams(out);
  };
  // Media side by side: the charted runs (while grouped, the ticked ones).
  const pinnedDetails = useRunDetails(grouped && p.get("media") === "1" ? state.sel : []);
  const mediaRuns = grouped
    ? state.sel.filter((id) => pinnedDetails.has(id)).map((id) => ({ id, label: pinnedDetails.get(id)!.name || id, color: "#7f8aa0" }))
    : chartRuns;
  const available = metricNames(details.values());
  const shown = settings.metrics.length ? settings.metrics.filter((m) => available.includes(m)) : settings.panels ? available : limitOwn(available, 24);
  const colOptions = [
    ...columns.params.map((c) => ({ value: "params." + c })),
    ...columns.metrics.map((c) => ({ value: "metrics." + c })),
  ];

  return (
    <div class="dashboard">
      <div class="toolbar">
        <input
          type="search" class="filter" placeholder="filter: name, tag, comment  ( / )" value={qDraft}
          data-testid="filter" onInput={(e) => setQDraft((e.target as HTMLInputElement).value)}
        />
        <input
          type="text" class="where mono" placeholder="where: params.lr < 0.01 and status == 'finished'" value={whereDraft}
          data-testid="where"
          onInput={(e) => setWhereDraft((e.target as HTMLInputElement).value)}
          onKeyDown={(e) => e.key === "Enter" && setState({ where: whereDraft })}
          onBlur={() => whereDraft !== state.where && setState({ where: whereDraft })}
        />
        <label>
          group by
          <select value={state.group} data-testid="group" onChange={(e) => setState({ group: (e.target as HTMLSelectElement).value })}>
            <option value="">nothing</option>
            <option value="experiment">experiment</option>
            <option value="group">group</option>
            <option value="job_type">job type</option>
            {columns.params.map((c) => (
              <option value={"params." + c} key={c}>{c}</option>
            ))}
          </select>
        </label>
        <Picker label="columns" testid="column-picker" options={colOptions} selected={state.cols} onChange={(cols) => setState({ cols })} />
        <span class="spacer" />
        {brushes.length > 0 && (
          <span class="brush-chip" data-testid="brush-chip" title={"brushed on the parallel coordinates: " + view.where}>
            brushed: {brushes.map(describeBrush).join(" · ")}
            <button class="small" data-testid="brush-chip-clear" title="clear the brushes" onClick={() => updateParams({ pcb: null })}>✕</button>
          </span>
        )}
        {state.sel.length > 0 && <button onClick={() => setState({ sel: [] })}>clear selection</button>}
        <TagTicked ids={state.sel} />
        <button
          disabled={state.sel.length < 2}
          data-testid="compare"
          title="compare the params and metrics of the selected runs (key: c)"
          onClick={() => navigate("/compare", { runs: state.sel.join(",") })}
        >
          compare {state.sel.length >= 2 ? state.sel.length : ""}
        </button>
      </div>
      <RunsTable
        state={view} onState={setState}
        charts={{
          colors: rowColors,
          hovered: (id) => hover !== null && hover === lineOf(id),
          onEye,
          onHover: (id) => setHover(id === null ? null : lineOf(id)),
          onFirst: (ids) => setFirst((old) => (old.join(",") === ids.join(",") ? old : ids)),
        }}
        segments={segments}
      />
      <div class="charts-area">
        <ChartControls
          settings={settings} available={available} onChange={(s) => updateParams(chartSettingsTo(s))}
          count={n} onCount={(c) => updateParams({ n: c === DEFAULT_CHARTED ? null : String(c) })}
          grouped={grouped}
        />
        <details
          class="chart-section" data-testid="scatter-section" open={p.get("scatter") === "1"}
          onToggle={(e) => {
            const open = (e.currentTarget as HTMLDetailsElement).open;
            if (open !== (p.get("scatter") === "1")) updateParams({ scatter: open ? "1" : null });
          }}
        >
          <summary>
            sweep scatter <span class="muted hint">any param or summary metric of every run of the view against another</span>
          </summary>
          {p.get("scatter") === "1" && (
            <Scatter
              q={state.q} where={view.where} columns={columns} settings={scatterSettingsFrom(p, columns)}
              hover={hover} onHover={setHover}
              onPick={(id) => setState({ sel: state.sel.includes(id) ? state.sel.filter((x) => x !== id) : [...state.sel, id] })}
            />
          )}
        </details>
        <details
          class="chart-section" data-testid="parcoords-section" open={p.get("pc") === "1"}
          onToggle={(e) => {
            const open = (e.currentTarget as HTMLDetailsElement).open;
            if (open !== (p.get("pc") === "1")) updateParams({ pc: open ? "1" : null });
          }}
        >
          <summary>
            parallel coordinates <span class="muted hint">params and summary metrics of every run of the view; drag along an axis to filter</span>
          </summary>
          {p.get("pc") === "1" && (
            <ParallelCoordinates q={state.q} where={state.where} columns={columns} params={p} hover={hover} onHover={setHover} />
          )}
        </details>
        <details
          class="chart-section" data-testid="media-section" open={p.get("media") === "1"}
          onToggle={(e) => {
            const open = (e.currentTarget as HTMLDetailsElement).open;
            if (open !== (p.get("media") === "1")) updateParams({ media: open ? "1" : null });
          }}
        >
          <summary>
            media across runs <span class="muted hint">{grouped ? "the ticked runs' images and text side by side" : "the charted runs' images and text side by side, one step slider"}</span>
          </summary>
          {p.get("media") === "1" && (
            mediaRuns.length
              ? <MediaAcrossRuns runs={mediaRuns} details={grouped ? pinnedDetails : details} params={p} />
              : <div class="muted">{grouped ? "Tick runs in the table to see their media side by side." : "No runs charted."}</div>
          )}
        </details>
        <ChartGrid
          runs={chartRuns}
          metrics={shown}
          settings={settings}
          has={(id, m) => {
            if (grouped) return true; // a group's runs without the series are left out of its line
            const d = details.get(id);
            return Boolean(d && (d.summary[m] || d.names?.scalars?.includes(m)));
          }}
          highlight={hover}
          onHover={setHover}
          onWide={(m) => updateParams(toggleWide(settings, m))}
          empty={
            grouped
              ? "No group to chart: raise how many groups are charted."
              : n === 0
                ? "Tick runs in the table to chart them, or chart the first runs of the view."
                : first.length
                  ? "No runs to chart: every run of this view is hidden (the eye in each row shows it again)."
                  : "No runs to chart in this view."
          }
        />
      </div>
    </div>
  );
}
