// The runs table: server-sorted, server-filtered, paged and virtualised, so 10,000 runs scroll smoothly.
import { useCallback, useEffect, useMemo, useRef, useState } from "preact/hooks";
import { ApiError, fetchRuns, MetaResult, RunRow } from "./api";
import { RUN_EDITED } from "./edit";
import { durationOf, fmtDate, fmtDuration, fmtValue } from "./format";
import { useLive, useWatch } from "./live";
import { StatusBadge, Tags } from "./widgets";

const ROW_H = 30;
const PAGE = 100;
const HEIGHT_KEY = "labtrack.tableHeight";
const COLLAPSED_KEY = "labtrack.tableCollapsed";

function stored(key: string): string | null {
  try {
    return window.localStorage.getItem(key);
  } catch {
    return null;
  }
}

function store(key: string, value: string | null): void {
  try {
    if (value === null) window.localStorage.removeItem(key);
    else window.localStorage.setItem(key, value);
  } catch {
    // private mode: the choice lasts this page only
  }
}

export interface TableState {
  q: string;
  where: string;
  sort: string;
  cols: string[];
  group: string;
  sel: string[];
}

interface Col {
  key: string; // sort key sent to the server
  title: string;
  width: string;
  cell: (r: RunRow, now: number) => preact.ComponentChildren;
}

const BASE_COLS: Col[] = [
  { key: "status", title: "status", width: "104px", cell: (r) => <StatusBadge status={r.status} /> },
  { key: "experiment", title: "experiment", width: "minmax(90px,1fr)", cell: (r) => <span class="ellipsis">{r.experiment}</span> },
  {
    key: "name", title: "name", width: "minmax(110px,1.2fr)",
    cell: (r) => (
      <a class="ellipsis run-link" href={`#/run/${encodeURIComponent(r.id)}`} title={r.id} onClick={(e) => e.stopPropagation()}>
        {r.name || r.id}
      </a>
    ),
  },
  { key: "comment", title: "comment", width: "minmax(90px,1.4fr)", cell: (r) => <span class="ellipsis muted-text" title={r.comment ?? ""}>{r.comment}</span> },
  { key: "tags", title: "tags", width: "minmax(70px,1fr)", cell: (r) => <Tags tags={r.tags} /> },
  { key: "started", title: "started", width: "150px", cell: (r) => <span class="mono">{fmtDate(r.started)}</span> },
  {
    key: "duration", title: "duration", width: "82px",
    cell: (r, now) => <span class="mono">{fmtDuration(durationOf(r.started, r.ended, r.duration, r.status === "running", now))}</span>,
  },
  {
    key: "commit", title: "commit", width: "84px",
    cell: (r) =>
      r.commit ? (
        <span class="mono" title={r.dirty ? "uncommitted changes when the run started" : "clean"}>
          {r.commit.slice(0, 7)}
          {r.dirty ? <span class="dirty">*</span> : null}
        </span>
      ) : null,
  },
];

// Shown only when a run on screen has one (runs.group, runs.job_type in run.json).
const GROUP_COLS: Col[] = [
  { key: "group", title: "group", width: "minmax(70px,0.8fr)", cell: (r) => <span class="ellipsis" title={r.group ?? ""}>{r.group}</span> },
  { key: "job_type", title: "job type", width: "minmax(60px,0.6fr)", cell: (r) => <span class="ellipsis">{r.job_type}</span> },
];

function userCol(c: string): Col {
  const [kind, ...rest] = c.split(".");
  const name = rest.join(".");
  return {
    key: c,
    title: name,
    width: "minmax(70px,0.8fr)",
    cell: (r) => {
      const v = kind === "params" ? r.params[name] : r.metrics[name];
      return <span class="mono num">{fmtValue(v)}</span>;
    },
  };
}

function minPx(width: string): number {
  const m = width.match(/(\d+)px/);
  return m ? Number(m[1]) : 60;
}

/** A block of rows of one group, in the table's (server's) order. */
export interface GroupSegment {
  key: string;
  label: string;
  start: number;
  count: number;
  color?: string;
}

/** What the table draws, top to bottom: a group's header (a segment) or the row at a server index. */
type Item = number | GroupSegment;

function buildItems(total: number, segments: GroupSegment[] | undefined, collapsed: Set<string>): Item[] {
  const out: Item[] = [];
  let covered = 0;
  for (const seg of segments ?? []) {
    if (seg.start + seg.count > total) break;
    out.push(seg);
    if (!collapsed.has(seg.key)) for (let i = seg.start; i < seg.start + seg.count; i++) out.push(i);
    covered = seg.start + seg.count;
  }
  // Rows no segment covers (none known yet, or runs that arrived since): plain rows.
  for (let i = covered; i < total; i++) out.push(i);
  return out;
}

export function groupValue(r: RunRow, group: string): string {
  if (!group) return "";
  if (group === "experiment") return r.experiment;
  if (group === "group" || group === "job_type") return r[group] ?? "—";
  if (group.startsWith("params.")) return fmtValue(r.params[group.slice(7)] ?? "—");
  return "";
}

/** What the table shows of the charts: each charted run's colour, the eye toggles, hover. */
export interface TableCharts {
  colors: Map<string, string>;
  /** Whether a run's row is highlighted (its line, or its group's line, is hovered). */
  hovered: (id: string) => boolean;
  onEye: (id: string, charted: boolean) => void;
  onHover: (id: string | null) => void;
  /** The ids of the first page of the current view, in the table's order. */
  onFirst: (ids: string[]) => void;
}

function EyeIcon({ open }: { open: boolean }) {
  return (
    <svg viewBox="0 0 16 16" width="15" height="15" aria-hidden="true">
      <path d="M1 8s2.6-4.5 7-4.5S15 8 15 8s-2.6 4.5-7 4.5S1 8 1 8z" fill="none" stroke="currentColor" stroke-width="1.3" />
      <circle cx="8" cy="8" r="2.1" fill={open ? "currentColor" : "none"} stroke="currentColor" stroke-width="1.2" />
      {!open && <path d="M2.5 13.5l11-11" stroke="currentColor" stroke-width="1.3" />}
    </svg>
  );
}

export function RunsTable(props: {
  state: TableState;
  onState: (s: Partial<TableState>) => void;
  charts?: TableCharts;
  /** With group-by: each group's block of rows (from the whole view), for headers that
   *  stay in sight while scrolling and collapse. */
  segments?: GroupSegment[];
}) {
  const { q, where, sort, cols, group, sel } = props.state;
  const [total, setTotal] = useState<number | null>(null);
  const [pages, setPages] = useState<Map<number, RunRow[]>>(new Map());
  const [error, setError] = useState<string | null>(null);
  const [scrollTop, setScrollTop] = useState(0);
  const [viewH, setViewH] = useState(400);
  const [now, setNow] = useState(Date.now());
  const [gen, setGen] = useState(0);
  // The table's height: dragged by its bottom edge and remembered; or collapsed to one line.
  const [height, setHeight] = useState<number | null>(() => {
    const v = Number(stored(HEIGHT_KEY));
    return Number.isFinite(v) && v >= 120 ? v : null;
  });
  const [collapsed, setCollapsed] = useState(() => stored(COLLAPSED_KEY) === "1");
  const box = useRef<HTMLDivElement>(null);
  const [pending, setPending] = useState(0);
  const loading = useRef(new Set<number>());
  const scroller = useRef<HTMLDivElement>(null);
  // Grouping sorts by the group first (the server sorts), so each group is one block of rows.
  const effSort = group ? group : sort;
  const queryKey = JSON.stringify([q, where, effSort, cols]);
  const keyRef = useRef(queryKey);

  useEffect(() => {
    keyRef.current = queryKey;
    // A new sort, group or filter starts at the top (the old offset means nothing in it).
    if (scroller.current) scroller.current.scrollTop = 0;
    setScrollTop(0);
    loading.current.clear();
    setPages(new Map());
    setError(null);
    loadPage(0, queryKey);
  }, [queryKey]);

  const loadPage = useCallback(
    (p: number, k: string) => {
      if (loading.current.has(p)) return;
      loading.current.add(p);
      fetchRuns({ offset: p * PAGE, limit: PAGE, sort: effSort, q, where, columns: cols })
        .then((page) => {
          if (keyRef.current !== k) return;
          setTotal(page.total);
          setPending(page.pending ?? 0);
          setPages((old) => new Map(old).set(p, page.runs));
        })
        .catch((e) => {
          if (keyRef.current !== k) return;
          loading.current.delete(p);
          setError(e instanceof ApiError || e instanceof Error ? e.message : String(e));
          setTotal(0);
        });
    },
    [q, where, effSort, cols.join(",")],
  );

  const page0 = pages.get(0);
  useEffect(() => {
    props.charts?.onFirst(page0 ? page0.map((r) => r.id) : []);
  }, [page0]);

  // Collapsed groups: forgotten when the grouping changes.
  const [closedGroups, setClosedGroups] = useState(new Set<string>());
  useEffect(() => setClosedGroups(new Set()), [group]);
  const segments = group ? props.segments : undefined;
  const items = useMemo(() => buildItems(total ?? 0, segments, closedGroups), [total, segments, closedGroups]);
  const dFirst = Math.max(0, Math.floor(scrollTop / ROW_H) - 10);
  const dLast = Math.min(items.length, Math.ceil((scrollTop + viewH) / ROW_H) + 10);
  // The server rows in view (the pages to load).
  let first = Infinity;
  let last = 0;
  for (let d = dFirst; d < dLast; d++) {
    const it = items[d];
    if (typeof it === "number") {
      first = Math.min(first, it);
      last = Math.max(last, it + 1);
    }
  }
  if (first === Infinity) first = last = 0;
  // A run appeared or vanished: fetch the pages in view again, keeping the old rows on screen
  // until the new ones arrive (no flicker).
  useEffect(() => {
    if (!gen) return;
    const k = keyRef.current;
    const visible = new Set<number>();
    for (let p = Math.floor(first / PAGE); p <= Math.floor(Math.max(first, last - 1) / PAGE); p++) visible.add(p);
    visible.add(0);
    for (const p of visible) {
      fetchRuns({ offset: p * PAGE, limit: PAGE, sort: effSort, q, where, columns: cols })
        .then((page) => {
          if (keyRef.current !== k) return;
          setTotal(page.total);
          setPending(page.pending ?? 0);
          setPages((old) => {
            const next = new Map<number, RunRow[]>();
            // Other pages may have shifted: drop them, they load again when scrolled to.
            for (const [i, rows] of old) if (visible.has(i)) next.set(i, rows);
            next.set(p, page.runs);
            return next;
          });
          for (const i of [...loading.current]) if (!visible.has(i)) loading.current.delete(i);
        })
        .catch(() => undefined);
    }
  }, [gen]);

  useEffect(() => {
    // Nothing in view (no runs, or the query failed: a bad `where` is sent once, not again).
    if (total === null || error !== null || last <= first) return;
    for (let p = Math.floor(first / PAGE); p <= Math.floor((last - 1) / PAGE); p++) {
      if (!pages.has(p)) loadPage(p, queryKey);
    }
  }, [first, last, total, queryKey, error]);

  useEffect(() => {
    const el = scroller.current;
    if (!el) return;
    const ro = new ResizeObserver(() => setViewH(el.clientHeight));
    ro.observe(el);
    return () => ro.disconnect();
  }, [collapsed]);

  const rowAt = (i: number) => pages.get(Math.floor(i / PAGE))?.[i % PAGE];
  const rows: { i: number; r: RunRow | undefined }[] = [];
  for (let i = first; i < last; i++) rows.push({ i, r: rowAt(i) });
  // The group whose rows are at the top of the view: its header stays in sight.
  let stickyGroup: GroupSegment | null = null;
  if (segments) {
    for (let d = Math.min(items.length - 1, Math.floor(scrollTop / ROW_H)); d >= 0; d--) {
      const it = items[d];
      if (typeof it !== "number") {
        stickyGroup = d === Math.floor(scrollTop / ROW_H) && scrollTop % ROW_H === 0 ? null : it;
        break;
      }
    }
  }
  const headH = useRef<HTMLDivElement>(null);
  const toggleGroup = (key: string) => {
    const next = new Set(closedGroups);
    if (next.has(key)) next.delete(key);
    else next.add(key);
    setClosedGroups(next);
  };

  // Live: watch the running rows on screen; refresh when runs appear or vanish.
  const running = rows.filter((x) => x.r && x.r.status === "running").map((x) => x.r!.id);
  useWatch(running);
  useEffect(() => {
    if (!running.length) return;
    const t = window.setInterval(() => setNow(Date.now()), 1000);
    return () => window.clearInterval(t);
  }, [running.length > 0]);
  useLive(
    "run",
    (row) => {
      setPages((old) => {
        let changed = false;
        const next = new Map(old);
        for (const [p, list] of old) {
          const j = list.findIndex((x) => x.id === row.id);
          if (j >= 0) {
            const copy = list.slice();
            copy[j] = { ...list[j], ...row, params: { ...list[j].params, ...row.params }, metrics: { ...list[j].metrics, ...row.metrics } };
            next.set(p, copy);
            changed = true;
          }
        }
        return changed ? next : old;
      });
    },
    [],
  );
  // The server is still reading a never-indexed root: ask again until every run is in.
  useEffect(() => {
    if (!pending) return;
    const t = window.setTimeout(() => setGen((g) => g + 1), 1000);
    return () => window.clearTimeout(t);
  }, [pending, gen]);
  // A run's comment or tags changed from this page (edit.tsx): show them without a refetch.
  useEffect(() => {
    const on = (e: Event) => {
      const r = (e as CustomEvent<MetaResult>).detail;
      setPages((old) => {
        const next = new Map(old);
        let changed = false;
        for (const [p, list] of old) {
          const j = list.findIndex((x) => x.id === r.id);
          if (j < 0) continue;
          const copy = list.slice();
          copy[j] = { ...list[j], comment: r.comment, tags: r.tags };
          next.set(p, copy);
          changed = true;
        }
        return changed ? next : old;
      });
    };
    window.addEventListener(RUN_EDITED, on);
    return () => window.removeEventListener(RUN_EDITED, on);
  }, []);
  const refreshTimer = useRef<number>();
  useLive(
    "runs",
    () => {
      window.clearTimeout(refreshTimer.current);
      refreshTimer.current = window.setTimeout(() => setGen((g) => g + 1), 300);
    },
    [],
  );

  const loaded = [...pages.values()].flat();
  const shownGroupCols = GROUP_COLS.filter((c) => group === c.key || loaded.some((r) => r[c.key as "group" | "job_type"]));
  const allCols = [...BASE_COLS.slice(0, 3), ...shownGroupCols, ...BASE_COLS.slice(3), ...cols.map(userCol)];
  const charts = props.charts;
  const template = [charts ? "58px" : "34px", ...allCols.map((c) => c.width)].filter(Boolean).join(" ");
  // Below this width the table scrolls sideways instead of squeezing columns to nothing.
  const minWidth = [charts ? 58 : 34, ...allCols.map((c) => minPx(c.width))].reduce((a, b) => a + b + 8, 32);
  const selSet = new Set(sel);
  const toggle = (id: string) => {
    props.onState({ sel: selSet.has(id) ? sel.filter((x) => x !== id) : [...sel, id] });
  };
  const sortBy = (key: string) => {
    props.onState({ sort: sort === key ? "-" + key : sort === "-" + key ? key : "-" + key, group: "" });
  };
  const arrow = (key: string) => (effSort === key ? " ▲" : effSort === "-" + key ? " ▼" : "");

  const collapse = (c: boolean) => {
    setCollapsed(c);
    store(COLLAPSED_KEY, c ? "1" : null);
  };
  const startResize = (e: PointerEvent) => {
    const el = box.current;
    if (!el) return;
    e.preventDefault();
    const y0 = e.clientY;
    const h0 = el.getBoundingClientRect().height;
    const max = Math.max(160, window.innerHeight - 160);
    let h = h0;
    const move = (ev: PointerEvent) => {
      h = Math.round(Math.min(max, Math.max(120, h0 + ev.clientY - y0)));
      setHeight(h);
    };
    const up = () => {
      window.removeEventListener("pointermove", move);
      window.removeEventListener("pointerup", up);
      store(HEIGHT_KEY, String(h));
    };
    window.addEventListener("pointermove", move);
    window.addEventListener("pointerup", up);
  };
  const fit = `${Math.max(5, total ?? 0) * ROW_H + 62}px`;
  const style = collapsed ? undefined : { height: height !== null ? `${height}px` : `min(32vh, ${fit})` };

  return (
    <div class={`runs-table${collapsed ? " collapsed" : ""}`} data-testid="runs-table" style={style} ref={box}>
      <div class="table-meta">
        <button
          class="small table-toggle" data-testid="table-toggle" aria-expanded={!collapsed}
          title={collapsed ? "show the runs table" : "hide the runs table: more room for the charts"}
          onClick={() => collapse(!collapsed)}
        >
          {collapsed ? "▸ show table" : "▾ hide table"}
        </button>{" "}
        <span data-testid="runs-total">{total === null ? "loading…" : `${total} run${total === 1 ? "" : "s"}${pending ? ` (reading ${pending} more…)` : ""}`}</span>
        {sel.length > 0 && <span> · {sel.length} selected</span>}
        {error && <span class="error" role="alert" data-testid="table-error"> {error}</span>}
        {total !== null && total > 0 && (
          <button
            class="small csv-export" data-testid="export-csv" title="download the runs of this view, with the shown columns, as CSV"
            onClick={() => void exportCsv({ q, where, sort: effSort, cols })}
          >
            CSV
          </button>
        )}
      </div>
      {!collapsed && <div class="grid-body" ref={scroller} onScroll={(e) => setScrollTop((e.target as HTMLDivElement).scrollTop)}>
      <div class="grid-head" ref={headH} style={{ gridTemplateColumns: template, minWidth: `${minWidth}px` }}>
        <div class="th" />
        {allCols.map((c) => (
          <div class={`th sortable${c.key.includes(".") ? " user-col" : ""}`} key={c.key} onClick={() => sortBy(c.key)} title={`sort by ${c.key}`}>
            {c.title}
            {arrow(c.key)}
          </div>
        ))}
      </div>
        {stickyGroup && (
          <div class="group-sticky-wrap" style={{ top: `${headH.current?.offsetHeight ?? 28}px`, minWidth: `${minWidth}px` }}>
            <GroupHead seg={stickyGroup} closed={closedGroups.has(stickyGroup.key)} onToggle={toggleGroup} sticky charts={charts} />
          </div>
        )}
        <div style={{ height: `${items.length * ROW_H}px`, position: "relative", minWidth: `${minWidth}px` }}>
          {items.slice(dFirst, dLast).map((it, k) => {
            const d = dFirst + k;
            if (typeof it !== "number") {
              return <GroupHead key={"g\u0000" + it.key} seg={it} closed={closedGroups.has(it.key)} onToggle={toggleGroup} top={d * ROW_H} charts={charts} />;
            }
            const i = it;
            const r = rowAt(i);
            return (
              <div
                key={r ? r.id : `i${i}`}
                class={`grid-row${r && selSet.has(r.id) ? " selected" : ""}${r && charts?.hovered(r.id) ? " hovered" : ""}`}
                style={{ top: `${d * ROW_H}px`, height: `${ROW_H}px`, gridTemplateColumns: template }}
                data-run={r?.id}
                onClick={() => r && toggle(r.id)}
                onMouseEnter={charts && r ? () => charts.onHover(r.id) : undefined}
                onMouseLeave={charts && r ? () => charts.onHover(null) : undefined}
              >
                {r ? (
                  <>
                    <div class="td pick-cell">
                      <input type="checkbox" checked={selSet.has(r.id)} aria-label={`select ${r.name || r.id}`} onClick={(e) => { e.stopPropagation(); toggle(r.id); }} />
                      {charts && <RowChartMark id={r.id} label={r.name || r.id} color={charts.colors.get(r.id)} onEye={charts.onEye} />}
                    </div>
                    {allCols.map((c) => (
                      <div class="td" key={c.key}>{c.cell(r, now)}</div>
                    ))}
                  </>
                ) : (
                  <div class="td muted">…</div>
                )}
              </div>
            );
          })}
        </div>
        {total === 0 && !error && (
          <div class="empty" data-testid="table-empty">
            {q || where
              ? "No run matches this filter; clear the filter or the where expression to see every run."
              : <>No runs yet. Runs appear here as soon as a script calls <code>labtrack.init()</code>.</>}
          </div>
        )}
      </div>}
      {!collapsed && (
        <div
          class="table-resize" data-testid="table-resize" title="drag to resize the table; double-click to fit"
          onPointerDown={startResize}
          onDblClick={() => {
            setHeight(null);
            store(HEIGHT_KEY, null);
          }}
        />
      )}
    </div>
  );
}

/** A CSV field: quoted when it holds a comma, a quote or a line break (RFC 4180). */
export function csvField(v: unknown): string {
  const s = v === null || v === undefined ? "" : typeof v === "string" ? v : typeof v === "number" || typeof v === "boolean" ? String(v) : JSON.stringify(v);
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

const CSV_LIMIT = 10_000;

/** The view's runs (filter and sort as shown, up to 10,000) with the shown columns, as a file. */
async function exportCsv(v: { q: string; where: string; sort: string; cols: string[] }): Promise<void> {
  const page = await fetchRuns({ offset: 0, limit: CSV_LIMIT, sort: v.sort, q: v.q, where: v.where, columns: v.cols });
  const head = ["id", "experiment", "name", "status", "started", "duration", "commit", "group", "comment", "tags", ...v.cols];
  const lines = [head.map(csvField).join(",")];
  for (const r of page.runs) {
    const user = v.cols.map((c) => (c.startsWith("params.") ? r.params[c.slice(7)] : r.metrics[c.slice(8)]));
    lines.push([r.id, r.experiment, r.name, r.status, r.started, r.duration, r.commit, r.group, r.comment, r.tags.join(" "), ...user].map(csvField).join(","));
  }
  const url = URL.createObjectURL(new Blob([lines.join("\r\n") + "\r\n"], { type: "text/csv" }));
  const a = document.createElement("a");
  a.href = url;
  a.download = "runs.csv";
  document.body.appendChild(a);
  a.click();
  a.remove();
  window.setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

/** A row's line colour (a hollow mark when the run is not charted) and its eye toggle. */
function RowChartMark(props: { id: string; label: string; color: string | undefined; onEye: (id: string, charted: boolean) => void }) {
  const charted = props.color !== undefined;
  return (
    <>
      <span
        class={`row-swatch${charted ? "" : " off"}`} data-testid="row-swatch" data-color={props.color ?? ""}
        style={charted ? { background: props.color } : undefined}
        title={charted ? "this run's line in the charts" : "not charted"}
      />
      <button
        class={`eye${charted ? " on" : ""}`} data-testid="eye" aria-pressed={charted}
        aria-label={`${charted ? "hide" : "show"} ${props.label} in the charts`}
        title={charted ? "hide this run's lines" : "show this run in the charts"}
        onClick={(e) => { e.stopPropagation(); props.onEye(props.id, !charted); }}
      >
        <EyeIcon open={charted} />
      </button>
    </>
  );
}

/** A group's header row: its label, run count and line colour; a click collapses the group.
 *  The sticky copy keeps the group of the rows at the top in sight while scrolling. */
function GroupHead(props: { seg: GroupSegment; closed: boolean; onToggle: (key: string) => void; top?: number; sticky?: boolean; charts?: TableCharts }) {
  const { seg } = props;
  return (
    <div
      class={`grid-row group-head${props.sticky ? " sticky" : ""}`} data-group={seg.key} data-testid={props.sticky ? "group-sticky" : "group-head"}
      style={props.sticky ? undefined : { top: `${props.top}px`, height: `${ROW_H}px` }}
      onClick={() => props.onToggle(seg.key)} aria-expanded={!props.closed}
      title={props.closed ? "show this group's runs" : "collapse this group"}
    >
      <span class="caret">{props.closed ? "▸" : "▾"}</span>
      {props.charts && <span class={`row-swatch${seg.color ? "" : " off"}`} style={seg.color ? { background: seg.color } : undefined} />}
      <span class={props.sticky ? "group-sticky-label" : "group-label"}>{seg.label}</span>
      <span class="muted group-count">{seg.count} run{seg.count === 1 ? "" : "s"}</span>
    </div>
  );
}
