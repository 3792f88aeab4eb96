// Parallel coordinates over every run of the view: one vertical axis per chosen param or
// summary metric, one line per run. Dragging along an axis brushes a range; the brushes
// become part of the view's `where`, so the runs table and the charts show only the runs
// inside every brush. A run without a value is drawn through a "missing" tick at the
// bottom of that axis, never as a broken line.
import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import { Columns, fetchRuns, Json, RunRow } from "./api";
import { fmtNumber, fmtValue } from "./format";
import { listParam, updateParams } from "./route";
import { fmtTick, gradient, GRADIENT, logByDefault, logTicks, niceTicks, valueOf } from "./scatter";
import { Picker } from "./widgets";

/** Runs read for the plot (the whole view, up to this many). */
const LIMIT = 10_000;
const HEIGHT = 340;
const PAD = { left: 56, right: 56, top: 40, bottom: 44 };
/** The "missing" tick sits this far below an axis's value range. */
const MISSING_GAP = 24;

/** A brush on one axis: a value range, some categories, and/or the missing tick. */
export interface Brush {
  col: string;
  lo: number | null;
  hi: number | null;
  cats: string[];
  missing: boolean;
}

// Column names and categories are written into the URL with these characters escaped.
const esc = (s: string) => s.replace(/[%:;|]/g, (c) => "%" + c.charCodeAt(0).toString(16).toUpperCase());
const unesc = (s: string) => s.replace(/%(25|3A|3B|7C)/gi, (_, h) => String.fromCharCode(parseInt(h, 16)));

/** `pcb=params.lr:0.0001..0.01;params.warmup:1..3|missing;params.optimizer:=adam|=sgd` */
export function brushesFrom(p: URLSearchParams): Brush[] {
  const out: Brush[] = [];
  for (const entry of (p.get("pcb") ?? "").split(";")) {
    const i = entry.lastIndexOf(":");
    if (i <= 0) continue;
    const b: Brush = { col: unesc(entry.slice(0, i)), lo: null, hi: null, cats: [], missing: false };
    for (const tok of entry.slice(i + 1).split("|")) {
      const range = /^(-?[\d.e+-]+)\.\.(-?[\d.e+-]+)$/i.exec(tok);
      if (tok === "missing") b.missing = true;
      else if (tok.startsWith("=")) b.cats.push(unesc(tok.slice(1)));
      else if (range && Number.isFinite(Number(range[1])) && Number.isFinite(Number(range[2]))) {
        b.lo = Math.min(Number(range[1]), Number(range[2]));
        b.hi = Math.max(Number(range[1]), Number(range[2]));
      }
    }
    if (b.lo !== null || b.cats.length || b.missing) out.push(b);
  }
  return out;
}

export function brushesTo(brushes: Brush[]): string | null {
  const parts = brushes.map((b) => {
    const toks: string[] = [];
    if (b.lo !== null && b.hi !== null) toks.push(`${b.lo}..${b.hi}`);
    for (const c of b.cats) toks.push("=" + esc(c));
    if (b.missing) toks.push("missing");
    return `${esc(b.col)}:${toks.join("|")}`;
  });
  return parts.length ? parts.join(";") : null;
}

/** The field as the where language reads it: `params.lr`, `metrics."odd name"`. */
function field(col: string): string {
  const dot = col.indexOf(".");
  const kind = col.slice(0, dot);
  const key = col.slice(dot + 1);
  return /[\s=!<>()[\],:'"]/.test(key) ? `${kind}.${JSON.stringify(key)}` : `${kind}.${key}`;
}

function literal(cat: string): string {
  return cat === "true" || cat === "false" || cat === "null" ? cat : JSON.stringify(cat);
}

/** The brushes as a where expression (each brush's parts or'ed, the brushes and'ed). */
export function brushWhere(brushes: Brush[]): string {
  return brushes
    .map((b) => {
      const f = field(b.col);
      const terms: string[] = [];
      if (b.lo !== null && b.hi !== null) terms.push(`${f} >= ${b.lo} and ${f} <= ${b.hi}`);
      if (b.cats.length) terms.push(`${f} in [${b.cats.map(literal).join(", ")}]`);
      if (b.missing) terms.push(`${f} == null`);
      return terms.length === 1 && brushes.length === 1 ? terms[0] : `(${terms.join(" or ")})`;
    })
    .join(" and ");
}

/** The view's where with the brushes added. */
export function withBrushes(where: string, brushes: Brush[]): string {
  const b = brushWhere(brushes);
  if (!b) return where;
  return where.trim() ? `(${where}) and ${b}` : b;
}

/** A brush in words, for the chip above the table. */
export function describeBrush(b: Brush): string {
  const parts: string[] = [];
  if (b.lo !== null && b.hi !== null) parts.push(`${fmtTick(b.lo)} – ${fmtTick(b.hi)}`);
  if (b.cats.length) parts.push(b.cats.join(", "));
  if (b.missing) parts.push("missing");
  return `${b.col.replace(/^(params|metrics)\./, "")} ${parts.join(" or ")}`;
}

const skipMetric = (c: string) => /^metrics\.(timings|system|rank\d+\/system)\//.test(c);

/** The axes from the URL (`pca=`), or the params (lr-like first) and up to two val metrics. */
export function axesFrom(p: URLSearchParams, cols: Columns): string[] {
  const chosen = listParam(p, "pca");
  if (chosen.length) return chosen;
  const params = cols.params.map((c) => "params." + c);
  const ordered = [...params.filter(logByDefault), ...params.filter((c) => !logByDefault(c))].slice(0, 6);
  const metrics = cols.metrics.map((c) => "metrics." + c).filter((c) => !skipMetric(c));
  const val = metrics.filter((m) => /val/.test(m)).slice(0, 2);
  return [...ordered, ...(val.length ? val : metrics.slice(0, 1))];
}

/** Log axes: `pclog=` lists them once the user changed one; else the lr-like params. */
export function logAxesFrom(p: URLSearchParams, axes: string[]): Set<string> {
  const v = p.get("pclog");
  if (v === null) return new Set(axes.filter(logByDefault));
  return new Set(v.split(",").filter(Boolean));
}

interface Axis {
  col: string;
  kind: "num" | "cat";
  log: boolean;
  cats: string[];
  lo: number;
  hi: number;
  /** the smallest and largest value drawn (lo and hi include a margin) */
  min: number;
  max: number;
  ticks: number[];
  missing: number;
  /** y of a value (null: drawn at the missing tick). */
  y: (v: Json | undefined) => number | null;
  /** the value at y (numeric axes). */
  invert: (y: number) => number;
}

function usable(v: Json | undefined, log: boolean): v is number {
  return typeof v === "number" && Number.isFinite(v) && (!log || v > 0);
}

function makeAxis(col: string, rows: RunRow[], log: boolean, h: number): Axis {
  const vals = rows.map((r) => valueOf(r, col));
  const nums = vals.filter((v): v is number => typeof v === "number" && Number.isFinite(v));
  const others = vals.filter((v) => v !== undefined && v !== null && typeof v !== "number");
  if (!nums.length && others.length) {
    const cats = [...new Set(others.map((v) => fmtValue(v)))].sort();
    const step = h / Math.max(1, cats.length);
    const y = (v: Json | undefined) => {
      if (v === undefined || v === null || typeof v === "number") return null;
      const i = cats.indexOf(fmtValue(v));
      return i < 0 ? null : h - step * (i + 0.5);
    };
    const missing = vals.filter((v) => y(v) === null).length;
    return { col, kind: "cat", log: false, cats, lo: 0, hi: 0, min: 0, max: 0, ticks: [], missing, y, invert: () => 0 };
  }
  const good = nums.filter((v) => usable(v, log));
  const min = good.length ? Math.min(...good) : 0;
  const max = good.length ? Math.max(...good) : 1;
  let lo = min;
  let hi = max;
  const t = (v: number) => (log ? Math.log10(v) : v);
  let a = t(lo);
  let b = t(hi);
  if (a === b) {
    a -= log ? 0.5 : Math.abs(a) * 0.1 || 1;
    b += log ? 0.5 : Math.abs(b) * 0.1 || 1;
  }
  const pad = (b - a) * 0.04;
  a -= pad;
  b += pad;
  lo = log ? Math.pow(10, a) : a;
  hi = log ? Math.pow(10, b) : b;
  const y = (v: Json | undefined) => (usable(v, log) ? h - ((t(v) - a) / (b - a)) * h : null);
  const invert = (yy: number) => {
    const u = a + ((h - yy) / h) * (b - a);
    return log ? Math.pow(10, u) : u;
  };
  const ticks = log ? logTicks(lo, hi) : niceTicks(lo, hi, 5);
  const missing = vals.filter((v) => y(v) === null).length;
  return { col, kind: "num", log, cats: [], lo, hi, min, max, ticks, missing, y, invert };
}

/** Does a run's value fall inside a brush (as the where expression decides it)? */
export function inBrush(b: Brush, v: Json | undefined): boolean {
  if (v === undefined || v === null) return b.missing;
  if (typeof v === "number") return b.lo !== null && b.hi !== null && v >= b.lo && v <= b.hi;
  return b.cats.includes(fmtValue(v));
}

/** Three significant digits: brush ends read as 0.000153, not 0.00015312345. */
const round = (v: number) => Number(v.toPrecision(3));

export function ParallelCoordinates(props: {
  q: string;
  where: string;
  columns: Columns;
  params: URLSearchParams;
  hover: string | null;
  onHover: (id: string | null) => void;
}) {
  const axesCols = axesFrom(props.params, props.columns);
  const logs = logAxesFrom(props.params, axesCols);
  const brushes = brushesFrom(props.params);
  const [rows, setRows] = useState<RunRow[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [width, setWidth] = useState(900);
  const [drag, setDrag] = useState<{ col: string; y0: number; y1: number } | null>(null);
  const box = useRef<HTMLDivElement>(null);
  const svg = useRef<SVGSVGElement>(null);
  const axesKey = axesCols.join(",");
  useEffect(() => {
    if (!axesCols.length) return;
    const ctl = new AbortController();
    fetchRuns({ offset: 0, limit: LIMIT, q: props.q, where: props.where, columns: axesCols }, ctl.signal)
      .then((page) => {
        setRows(page.runs);
        setError(null);
      })
      .catch((e) => !ctl.signal.aborted && setError(e instanceof Error ? e.message : String(e)));
    return () => ctl.abort();
  }, [props.q, props.where, axesKey]);
  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const ro = new ResizeObserver(() => setWidth(Math.max(360, el.clientWidth - 20)));
    ro.observe(el);
    return () => ro.disconnect();
  }, []);

  const w = width - PAD.left - PAD.right;
  const h = HEIGHT - PAD.top - PAD.bottom - MISSING_GAP;
  const missY = h + MISSING_GAP;
  const logKey = [...logs].sort().join(",");
  const axes = useMemo(
    () => (rows ? axesCols.map((c) => makeAxis(c, rows, logs.has(c), h)) : []),
    [rows, axesKey, logKey, h],
  );
  const xOf = (i: number) => (axes.length <= 1 ? w / 2 : (i * w) / (axes.length - 1));
  const colorAxis = axes.length ? axes[axes.length - 1] : null;
  const brushKey = brushesTo(brushes) ?? "";
  const lines = useMemo(() => {
    if (!rows) return [];
    return rows.map((r) => {
      const vals = axes.map((a) => valueOf(r, a.col));
      const pts = axes.map((a, i) => `${xOf(i).toFixed(1)},${(a.y(vals[i]) ?? missY).toFixed(1)}`);
      const inside = brushes.every((b) => {
        const i = axes.findIndex((a) => a.col === b.col);
        return i < 0 || inBrush(b, vals[i]);
      });
      let color = "#7f8aa0";
      const cv = colorAxis ? colorAxis.y(vals[axes.length - 1]) : null;
      if (colorAxis && cv !== null) color = gradient(colorAxis.kind === "cat" ? 1 - cv / h : 1 - cv / h);
      return { r, d: "M" + pts.join("L"), inside, color };
    });
  }, [axes, brushKey, w]);
  const inside = lines.filter((l) => l.inside).length;

  const setBrushes = (next: Brush[]) => updateParams({ pcb: brushesTo(next) });
  const localY = (e: PointerEvent) => e.clientY - (svg.current?.getBoundingClientRect().top ?? 0) - PAD.top;
  const finish = (a: Axis, y0: number, y1: number) => {
    const others = brushes.filter((b) => b.col !== a.col);
    if (Math.abs(y1 - y0) < 3) return setBrushes(others); // a click clears the axis's brush
    const top = Math.min(y0, y1);
    const bot = Math.max(y0, y1);
    const b: Brush = { col: a.col, lo: null, hi: null, cats: [], missing: top <= missY + 6 && bot >= missY - 6 };
    if (a.kind === "num" && top < h && bot > 0) {
      b.lo = round(a.invert(Math.min(h, bot)));
      b.hi = round(a.invert(Math.max(0, top)));
    }
    if (a.kind === "cat") b.cats = a.cats.filter((c) => {
      const yy = a.y(c);
      return yy !== null && yy >= top && yy <= bot;
    });
    setBrushes(b.lo !== null || b.cats.length || b.missing ? [...others, b] : others);
  };
  const toggleLog = (col: string) => {
    const next = new Set(logs);
    if (next.has(col)) next.delete(col);
    else next.add(col);
    updateParams({ pclog: [...next].join(",") || "-", pcb: brushesTo(brushes.filter((b) => b.col !== col)) });
  };
  const short = (c: string) => c.replace(/^(params|metrics)\./, "");
  const room = axes.length > 1 ? w / (axes.length - 1) : w;
  const fit = (s: string) => {
    const max = Math.max(4, Math.floor((room - 10) / 6.6));
    return s.length > max ? s.slice(0, max - 1) + "…" : s;
  };
  const options = [
    ...props.columns.params.map((c) => ({ value: "params." + c, group: "param" })),
    ...props.columns.metrics.map((c) => ({ value: "metrics." + c, group: "metric" })),
  ];
  const hovered = props.hover ? lines.find((l) => l.r.id === props.hover) : undefined;

  return (
    <div class="scatter parcoords" data-testid="parcoords" ref={box} data-lines={lines.length} data-inside={inside}>
      <div class="scatter-controls">
        <Picker
          label="axes" testid="pc-axes" options={options} selected={axesCols}
          onChange={(v) => updateParams({ pca: v.length ? v.join(",") : null, pcb: brushesTo(brushes.filter((b) => v.includes(b.col))) })}
        />
        {rows && (
          <span class="muted" data-testid="pc-count">
            {lines.length} run{lines.length === 1 ? "" : "s"}
            {brushes.length ? ` · ${inside} inside the brush${brushes.length === 1 ? "" : "es"}` : " · drag along an axis to brush a range"}
          </span>
        )}
        {brushes.length > 0 && (
          <button class="small" data-testid="pc-clear" onClick={() => setBrushes([])}>clear brushes</button>
        )}
        {error && <span class="error" role="alert">{error}</span>}
      </div>
      <svg ref={svg} width={width} height={HEIGHT} class="scatter-plot pc-plot">
        <g transform={`translate(${PAD.left},${PAD.top})`}>
          <g class="pc-lines">
            {/* the runs outside the brushes underneath, the hovered one on top */}
            {[...lines.filter((l) => !l.inside), ...lines.filter((l) => l.inside && l.r.id !== props.hover), ...lines.filter((l) => l.inside && l.r.id === props.hover)].map((l) => (
              <path
                key={l.r.id} d={l.d} data-run={l.r.id}
                class={`pc-line${l.inside ? "" : " out"}${props.hover === l.r.id ? " hovered" : ""}`}
                stroke={l.inside ? l.color : undefined}
                onMouseEnter={() => props.onHover(l.r.id)} onMouseLeave={() => props.onHover(null)}
              >
                <title>{l.r.name || l.r.id}</title>
              </path>
            ))}
          </g>
          {axes.map((a, i) => {
            const x = xOf(i);
            const b = brushes.find((bb) => bb.col === a.col);
            const spans: [number, number][] = [];
            if (b && a.kind === "num" && b.lo !== null && b.hi !== null) {
              const y1 = a.y(b.hi) ?? 0;
              const y2 = a.y(b.lo) ?? h;
              spans.push([Math.max(0, Math.min(y1, y2)), Math.min(h, Math.max(y1, y2))]);
            }
            if (b && a.kind === "cat") for (const c of b.cats) {
              const yy = a.y(c);
              if (yy !== null) spans.push([yy - 8, yy + 8]);
            }
            if (b?.missing) spans.push([missY - 7, missY + 7]);
            return (
              <g key={a.col} transform={`translate(${x},0)`} class="pc-axis" data-col={a.col} data-testid={`pc-axis-${a.col}`}>
                <line y1={0} y2={h} class="pc-axis-line" />
                {a.kind === "num" && a.ticks.map((t) => {
                  const yy = a.y(t);
                  return yy === null ? null : (
                    <g key={t} transform={`translate(0,${yy})`}>
                      <line x1={-4} x2={0} class="pc-axis-line" />
                      <text x={-6} dy="0.32em" class="scatter-tick" text-anchor="end">{fmtTick(t)}</text>
                    </g>
                  );
                })}
                {a.kind === "cat" && a.cats.map((c) => (
                  <g key={c} transform={`translate(0,${a.y(c)})`}>
                    <line x1={-4} x2={0} class="pc-axis-line" />
                    <text x={-6} dy="0.32em" class="scatter-tick" text-anchor="end">{fit(c)}</text>
                  </g>
                ))}
                {a.missing > 0 && (
                  <g transform={`translate(0,${missY})`} data-testid="pc-missing">
                    <line x1={-4} x2={4} class="pc-axis-line" />
                    <text x={-6} dy="0.32em" class="scatter-tick pc-missing" text-anchor="end">
                      {a.log ? "≤0/missing" : "missing"}
                    </text>
                  </g>
                )}
                {spans.map(([y1, y2], k) => (
                  <rect key={k} x={-7} width={14} y={y1} height={Math.max(2, y2 - y1)} class="pc-brush" data-testid="pc-brush" />
                ))}
                {drag && drag.col === a.col && (
                  <rect x={-7} width={14} y={Math.min(drag.y0, drag.y1)} height={Math.abs(drag.y1 - drag.y0)} class="pc-brush drafting" />
                )}
                <rect
                  x={-14} width={28} y={-4} height={missY + 12} class="pc-hit" data-testid="pc-hit"
                  onPointerDown={(e) => {
                    (e.currentTarget as Element).setPointerCapture(e.pointerId);
                    const y = localY(e);
                    setDrag({ col: a.col, y0: y, y1: y });
                  }}
                  onPointerMove={(e) => drag && drag.col === a.col && setDrag({ ...drag, y1: localY(e) })}
                  onPointerUp={(e) => {
                    if (!drag || drag.col !== a.col) return;
                    setDrag(null);
                    finish(a, drag.y0, localY(e));
                  }}
                >
                  <title>drag to brush a range of {short(a.col)}; click to clear it</title>
                </rect>
                <g>
                  <title>{a.col}</title>
                  <text y={-22} class="scatter-label" text-anchor="middle">{fit(short(a.col))}</text>
                </g>
                {a.kind === "num" && (
                  <g>
                    <title>switch between a linear and a log axis</title>
                    <text y={-8} class="pc-log" text-anchor="middle" data-testid="pc-log" onClick={() => toggleLog(a.col)}>
                      {a.log ? "log ⇄" : "linear ⇄"}
                    </text>
                  </g>
                )}
              </g>
            );
          })}
        </g>
      </svg>
      <div class="scatter-legend">
        {hovered ? (
          <span data-testid="pc-readout">
            <b>{hovered.r.name || hovered.r.id}</b>
            {axes.map((a) => {
              const v = valueOf(hovered.r, a.col);
              return ` · ${short(a.col)} ${v === undefined || v === null ? "missing" : typeof v === "number" ? fmtNumber(v) : fmtValue(v)}`;
            })}
          </span>
        ) : (
          <span class="muted">hover a line to read the run; lines are coloured by the last axis</span>
        )}
        {colorAxis && colorAxis.kind === "num" && (
          <span class="scatter-gradient">
            {short(colorAxis.col)} {fmtTick(round(colorAxis.min))}{" "}
            <span class="bar" style={{ background: `linear-gradient(90deg, ${GRADIENT.join(",")})` }} /> {fmtTick(round(colorAxis.max))}
          </span>
        )}
      </div>
    </div>
  );
}
