// Histograms over steps: a heat map (value across, step down, darker = more) and the
// histogram of one chosen step as bars.
import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import { HistogramRecord } from "./api";
import { fmtNumber, fmtStep } from "./format";
import { StepSlider } from "./media";
import { canvasColors, useDark } from "./theme";

function drawHeat(canvas: HTMLCanvasElement, recs: HistogramRecord[], lo: number, hi: number, mark: number, dark: boolean) {
  const dpr = window.devicePixelRatio || 1;
  const W = canvas.clientWidth;
  const H = canvas.clientHeight;
  canvas.width = W * dpr;
  canvas.height = H * dpr;
  const ctx = canvas.getContext("2d")!;
  ctx.scale(dpr, dpr);
  ctx.fillStyle = canvasColors(dark).panel;
  ctx.fillRect(0, 0, W, H);
  if (!recs.length || !(hi > lo)) return;
  const rowH = H / recs.length;
  const span = hi - lo;
  recs.forEach((r, ri) => {
    let peak = 0;
    const dens = r.counts.map((c, i) => {
      const w = r.bins[i + 1] - r.bins[i];
      const d = w > 0 ? c / w : 0;
      peak = Math.max(peak, d);
      return d;
    });
    r.counts.forEach((_, i) => {
      if (!peak || !dens[i]) return;
      const x0 = ((r.bins[i] - lo) / span) * W;
      const x1 = ((r.bins[i + 1] - lo) / span) * W;
      const a = Math.sqrt(dens[i] / peak);
      ctx.fillStyle = dark ? `rgba(100,170,255,${a.toFixed(3)})` : `rgba(31,119,180,${a.toFixed(3)})`;
      ctx.fillRect(x0, ri * rowH, Math.max(1, x1 - x0), Math.ceil(rowH));
    });
  });
  ctx.strokeStyle = "#e6550d";
  ctx.lineWidth = 1.5;
  ctx.strokeRect(0.5, mark * rowH + 0.5, W - 1, Math.max(1, rowH - 1));
}

function drawBars(canvas: HTMLCanvasElement, r: HistogramRecord | undefined, lo: number, hi: number, dark: boolean) {
  const dpr = window.devicePixelRatio || 1;
  const W = canvas.clientWidth;
  const H = canvas.clientHeight;
  canvas.width = W * dpr;
  canvas.height = H * dpr;
  const ctx = canvas.getContext("2d")!;
  ctx.scale(dpr, dpr);
  ctx.clearRect(0, 0, W, H);
  if (!r || !(hi > lo)) return;
  const peak = Math.max(...r.counts, 1);
  const span = hi - lo;
  ctx.fillStyle = dark ? "#5aa0e6" : "#1f77b4";
  r.counts.forEach((c, i) => {
    const x0 = ((r.bins[i] - lo) / span) * W;
    const x1 = ((r.bins[i + 1] - lo) / span) * W;
    const h = (c / peak) * (H - 4);
    ctx.fillRect(x0, H - h, Math.max(1, x1 - x0 - 1), h);
  });
}

export function HistogramView({ name, records }: { name: string; records: HistogramRecord[] }) {
  const recs = useMemo(() => records.filter((r) => r.bins.length === r.counts.length + 1).sort((a, b) => a.step - b.step), [records]);
  const [index, setIndex] = useState(recs.length - 1);
  useEffect(() => setIndex(recs.length - 1), [recs.length]);
  const dark = useDark();
  const heat = useRef<HTMLCanvasElement>(null);
  const bars = useRef<HTMLCanvasElement>(null);
  const [lo, hi] = useMemo(() => {
    let a = Infinity;
    let b = -Infinity;
    for (const r of recs) {
      a = Math.min(a, r.bins[0]);
      b = Math.max(b, r.bins[r.bins.length - 1]);
    }
    return [a, b];
  }, [recs]);
  useEffect(() => {
    if (heat.current) drawHeat(heat.current, recs, lo, hi, index, dark);
    if (bars.current) drawBars(bars.current, recs[index], lo, hi, dark);
  }, [recs, lo, hi, index, dark]);
  const r = recs[index];
  return (
    <div class="media-card wide" data-name={name} data-testid="histogram">
      <h3>{name}</h3>
      <StepSlider steps={recs.map((x) => x.step)} index={index} onIndex={setIndex} />
      <div class="hist-grid">
        <div>
          <div class="muted small-caption">all steps (top: first step{recs.length ? ` ${fmtStep(recs[0].step)}` : ""}; bottom: last)</div>
          <canvas ref={heat} class="hist-heat" />
        </div>
        <div>
          <div class="muted small-caption">step {r ? fmtStep(r.step) : ""}{r?.count !== undefined ? ` · ${r.count} values` : ""}</div>
          <canvas ref={bars} class="hist-bars" />
        </div>
      </div>
      <div class="hist-axis mono muted"><span>{fmtNumber(lo)}</span><span>{fmtNumber(hi)}</span></div>
    </div>
  );
}
