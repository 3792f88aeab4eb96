// The sweep scatter: any param or summary metric of every run of the view against any other,
// linear or log axes, coloured by a third (a gradient for numbers, a palette for categories).
import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import { Columns, fetchRuns, Json, RunRow } from "./api";
import { PALETTE } from "./colors";
import { fmtNumber, fmtValue } from "./format";
import { updateParams } from "./route";

/** Runs read for the scatter (the whole view, up to this many). */
const LIMIT = 10_000;
const HEIGHT = 340;
const PAD = { left: 64, right: 16, top: 12, bottom: 40 };

/** Params that span decades (learning rates, weight decay, epsilons) read better on a log axis. */
export function logByDefault(column: string): boolean {
  const name = column.replace(/^(params|metrics)\./, "").split(/[./]/).pop() ?? "";
  return /^(lr|learning_?rate|weight_?decay|wd|eps|epsilon|l2)$|(^|_)lr$|^lr_/i.test(name);
}

export interface ScatterSettings {
  x: string;
  y: string;
  color: string;
  logX: boolean;
  logY: boolean;
}

/** The scatter's state from the URL; the axes default to an lr-like param and a val metric. */
export function scatterSettingsFrom(p: URLSearchParams, cols: Columns): ScatterSettings {
  const params = cols.params.map((c) => "params." + c);
  const metrics = cols.metrics.map((c) => "metrics." + c).filter((c) => !/^metrics\.(timings|system|rank\d+\/system)\//.test(c));
  const x = p.get("sx") ?? params.find(logByDefault) ?? params[0] ?? metrics[0] ?? "";
  const y = p.get("sy") ?? metrics.find((m) => /val/.test(m)) ?? metrics[0] ?? "";
  const flag = (k: string, col: string) => (p.get(k) === null ? logByDefault(col) : p.get(k) === "1");
  return { x, y, color: p.get("sc") ?? "", logX: flag("slogx", x), logY: flag("slogy", y) };
}

export function valueOf(r: RunRow, col: string): Json | undefined {
  if (col.startsWith("params.")) return r.params[col.slice(7)];
  if (col.startsWith("metrics.")) return r.metrics[col.slice(8)];
  return undefined;
}

/** About `count` round ticks between lo and hi (1, 2, 5 times a power of ten apart). */
export function niceTicks(lo: number, hi: number, count = 6): number[] {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const p = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 5, 10].map((m) => m * p).find((s) => s >= raw) ?? 10 * p;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

/** Powers of ten within [lo, hi] (both > 0); a finer 1-2-5 set when they span little. */
export function logTicks(lo: number, hi: number): number[] {
  const a = Math.floor(Math.log10(lo));
  const b = Math.ceil(Math.log10(hi));
  const mult = b - a <= 3 ? [1, 2, 5] : [1];
  const out: number[] = [];
  for (let e = a; e <= b; e++) for (const m of mult) {
    const v = Number((m * Math.pow(10, e)).toPrecision(12));
    if (v >= lo * (1 - 1e-9) && v <= hi * (1 + 1e-9)) out.push(v);
  }
  return out;
}

/** A tick label: short, 1e-4 rather than 1.000e-4. */
export function fmtTick(v: number): string {
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e6)) {
    const short = v.toExponential(0);
    return Number(short) === v ? short : v.toExponential(1);
  }
  return fmtNumber(v);
}

function axis(values: number[], log: boolean, size: number, flip: boolean) {
  let lo = Math.min(...values);
  let hi = Math.max(...values);
  if (log) {
    lo = Math.log10(lo);
    hi = Math.log10(hi);
  }
  if (hi === lo) {
    lo -= log ? 0.5 : Math.abs(lo) * 0.1 || 1;
    hi += log ? 0.5 : Math.abs(hi) * 0.1 || 1;
  }
  const pad = (hi - lo) * 0.05;
  lo -= pad;
  hi += pad;
  const pos = (v: number) => {
    const t = ((log ? Math.log10(v) : v) - lo) / (hi - lo);
    return flip ? size - t * size : t * size;
  };
  const ticks = log ? logTicks(Math.pow(10, lo), Math.pow(10, hi)) : niceTicks(lo, hi);
  return { pos, ticks };
}

// A perceptual-ish gradient (dark blue, teal, yellow) for a numeric colour column.
export const GRADIENT = ["#30123b", "#3e9bfe", "#46f884", "#e1dd37", "#f05b12"];

export function gradient(t: number): string {
  const x = Math.min(1, Math.max(0, t)) * (GRADIENT.length - 1);
  const i = Math.min(GRADIENT.length - 2, Math.floor(x));
  const f = x - i;
  const a = parseInt(GRADIENT[i].slice(1), 16);
  const b = parseInt(GRADIENT[i + 1].slice(1), 16);
  const mix = (sh: number) => Math.round(((a >> sh) & 255) * (1 - f) + ((b >> sh) & 255) * f);
  return `rgb(${mix(16)},${mix(8)},${mix(0)})`;
}

export function Scatter(props: {
  q: string;
  where: string;
  columns: Columns;
  settings: ScatterSettings;
  hover: string | null;
  onHover: (id: string | null) => void;
  onPick: (id: string) => void;
}) {
  const { x, y, color, logX, logY } = props.settings;
  const [rows, setRows] = useState<RunRow[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [width, setWidth] = useState(800);
  const box = useRef<HTMLDivElement>(null);
  useEffect(() => {
    if (!x || !y) return;
    const ctl = new AbortController();
    fetchRuns({ offset: 0, limit: LIMIT, q: props.q, where: props.where, columns: [x, y, color].filter(Boolean) }, ctl.signal)
      .then((page) => {
        setRows(page.runs);
        setError(null);
      })
      .catch((e) => !ctl.signal.aborted && setError(e instanceof Error ? e.message : String(e)));
    return () => ctl.abort();
  }, [props.q, props.where, x, y, color]);
  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const ro = new ResizeObserver(() => setWidth(Math.max(320, el.clientWidth)));
    ro.observe(el);
    return () => ro.disconnect();
  }, []);

  const options = [
    ...props.columns.params.map((c) => "params." + c),
    ...props.columns.metrics.map((c) => "metrics." + c),
  ];
  const set = (k: string, v: string | null) => updateParams({ [k]: v });
  const pick = (k: string, log: string, v: string) => updateParams({ [k]: v, [log]: null });

  const plot = useMemo(() => {
    if (!rows) return null;
    const pts: { r: RunRow; x: number; y: number; c: Json | undefined }[] = [];
    let missing = 0;
    let nonPositive = 0;
    for (const r of rows) {
      const vx = valueOf(r, x);
      const vy = valueOf(r, y);
      if (typeof vx !== "number" || typeof vy !== "number" || !Number.isFinite(vx) || !Number.isFinite(vy)) {
        missing++;
        continue;
      }
      if ((logX && vx <= 0) || (logY && vy <= 0)) {
        nonPositive++;
        continue;
      }
      pts.push({ r, x: vx, y: vy, c: color ? valueOf(r, color) : undefined });
    }
    const numeric = pts.filter((p) => typeof p.c === "number" && Number.isFinite(p.c)).map((p) => p.c as number);
    const cats = [...new Set(pts.filter((p) => p.c !== undefined && typeof p.c !== "number").map((p) => fmtValue(p.c)))].sort();
    const cLo = numeric.length ? Math.min(...numeric) : 0;
    const cHi = numeric.length ? Math.max(...numeric) : 1;
    const colorOf = (c: Json | undefined): string => {
      if (!color || c === undefined || c === null) return "#7f8aa0";
      if (typeof c === "number") return gradient(cHi > cLo ? (c - cLo) / (cHi - cLo) : 0.5);
      return PALETTE[cats.indexOf(fmtValue(c)) % PALETTE.length];
    };
    return { pts, missing, nonPositive, cats, cLo, cHi, numeric: numeric.length > 0, colorOf };
  }, [rows, x, y, color, logX, logY]);

  const w = width - PAD.left - PAD.right;
  const h = HEIGHT - PAD.top - PAD.bottom;
  const ax = plot && plot.pts.length ? axis(plot.pts.map((p) => p.x), logX, w, false) : null;
  const ay = plot && plot.pts.length ? axis(plot.pts.map((p) => p.y), logY, h, true) : null;
  const short = (c: string) => c.replace(/^(params|metrics)\./, "");
  const hovered = plot?.pts.find((p) => p.r.id === props.hover);

  return (
    <div class="scatter" data-testid="scatter" ref={box} data-points={plot ? plot.pts.length : 0}>
      <div class="scatter-controls">
        {(
          [
            ["x", "sx", "slogx", x, logX],
            ["y", "sy", "slogy", y, logY],
          ] as const
        ).map(([label, key, logKey, value, log]) => (
          <span key={key} class="scatter-axis">
            <label>
              {label}
              <select value={value} data-testid={`scatter-${label}`} onChange={(e) => pick(key, logKey, (e.target as HTMLSelectElement).value)}>
                {options.map((o) => <option key={o} value={o}>{o}</option>)}
              </select>
            </label>
            <label title="logarithmic axis">
              <input type="checkbox" checked={log} data-testid={`scatter-log${label}`} onChange={(e) => set(logKey, (e.target as HTMLInputElement).checked ? "1" : "0")} />
              log
            </label>
          </span>
        ))}
        <label>
          colour
          <select value={color} data-testid="scatter-color" onChange={(e) => set("sc", (e.target as HTMLSelectElement).value || null)}>
            <option value="">none</option>
            {options.map((o) => <option key={o} value={o}>{o}</option>)}
          </select>
        </label>
        {plot && (
          <span class="muted" data-testid="scatter-count">
            {plot.pts.length} run{plot.pts.length === 1 ? "" : "s"}
            {plot.missing ? ` · ${plot.missing} without ${short(x)} or ${short(y)}` : ""}
            {plot.nonPositive ? ` · ${plot.nonPositive} ≤ 0 left off the log axis` : ""}
          </span>
        )}
        {error && <span class="error" role="alert">{error}</span>}
      </div>
      <svg width={width} height={HEIGHT} class="scatter-plot">
        <g transform={`translate(${PAD.left},${PAD.top})`}>
          <rect width={w} height={h} class="scatter-frame" />
          {ax && ay && plot && (
            <>
              {ax.ticks.map((t) => (
                <g key={"x" + t} transform={`translate(${ax.pos(t)},0)`}>
                  <line y1={0} y2={h} class="scatter-grid" />
                  <text y={h + 16} class="scatter-tick" text-anchor="middle">{fmtTick(t)}</text>
                </g>
              ))}
              {ay.ticks.map((t) => (
                <g key={"y" + t} transform={`translate(0,${ay.pos(t)})`}>
                  <line x1={0} x2={w} class="scatter-grid" />
                  <text x={-6} dy="0.32em" class="scatter-tick" text-anchor="end">{fmtTick(t)}</text>
                </g>
              ))}
              {plot.pts.map((p) => (
                <circle
                  key={p.r.id} data-run={p.r.id} cx={ax.pos(p.x)} cy={ay.pos(p.y)} r={props.hover === p.r.id ? 7 : 5}
                  fill={plot.colorOf(p.c)} class={`scatter-dot${props.hover === p.r.id ? " hovered" : ""}`}
                  onMouseEnter={() => props.onHover(p.r.id)} onMouseLeave={() => props.onHover(null)}
                  onClick={() => props.onPick(p.r.id)}
                >
                  <title>{`${p.r.name || p.r.id}\n${short(x)} = ${fmtNumber(p.x)}\n${short(y)} = ${fmtNumber(p.y)}${color ? `\n${short(color)} = ${fmtValue(p.c ?? null)}` : ""}`}</title>
                </circle>
              ))}
            </>
          )}
          <text x={w / 2} y={h + 34} class="scatter-label" text-anchor="middle">{short(x)}{logX ? " (log)" : ""}</text>
          <text transform={`translate(${-PAD.left + 12},${h / 2}) rotate(-90)`} class="scatter-label" text-anchor="middle">{short(y)}{logY ? " (log)" : ""}</text>
        </g>
      </svg>
      <div class="scatter-legend">
        {hovered ? (
          <span data-testid="scatter-readout">
            <b>{hovered.r.name || hovered.r.id}</b> · {short(x)} {fmtNumber(hovered.x)} · {short(y)} {fmtNumber(hovered.y)}
            {color ? ` · ${short(color)} ${fmtValue(hovered.c ?? null)}` : ""}
          </span>
        ) : (
          <span class="muted">hover a point to read it; click to pin the run in the charts</span>
        )}
        {color && plot?.numeric && (
          <span class="scatter-gradient" data-testid="scatter-gradient">
            {fmtNumber(plot.cLo)} <span class="bar" style={{ background: `linear-gradient(90deg, ${GRADIENT.join(",")})` }} /> {fmtNumber(plot.cHi)}
          </span>
        )}
        {color && plot && !plot.numeric && plot.cats.map((c, i) => (
          <span key={c} class="legend-item"><span class="swatch" style={{ background: PALETTE[i % PALETTE.length] }} />{c}</span>
        ))}
      </div>
    </div>
  );
}
