// Images with a step slider and their bounding boxes (class filter, probability threshold);
// stepped markdown and tables; text with its diff against the expected text.
import { useEffect, useMemo, useState } from "preact/hooks";
import { fetchFileText, fileUrl, MediaEntry, TextRecord } from "./api";
import { classColor } from "./colors";
import { fmtStep } from "./format";
import { Markdown } from "./markdown";
import { diff } from "./textdiff";
import type { ComponentChildren } from "preact";

interface Box {
  xStart: number;
  yStart: number;
  xEnd: number;
  yEnd: number;
  className?: string;
  probability?: number;
}
interface BoxFile {
  boxes: Box[];
  classes?: string[];
  threshold?: number;
}

export function StepSlider(props: { steps: number[]; index: number; onIndex: (i: number) => void; testid?: string }) {
  const { steps, index } = props;
  if (steps.length <= 1) return <div class="step-line muted">step {steps.length ? fmtStep(steps[0]) : "–"}</div>;
  return (
    <div class="step-line">
      <label>
        step <span class="mono" data-testid="step-value">{fmtStep(steps[index])}</span>
        <input
          type="range" min="0" max={steps.length - 1} step="1" value={index} data-testid={props.testid}
          onInput={(e) => props.onIndex(Number((e.target as HTMLInputElement).value))}
        />
      </label>
      <span class="muted">{index + 1} / {steps.length}</span>
    </div>
  );
}

/** What the box controls keep while the step (or the run) changes: the threshold the user
 *  set (null: each box file's own default) and the classes switched off. */
export interface BoxFilter {
  threshold: number | null;
  hidden: string[];
}

export const NO_FILTER: BoxFilter = { threshold: null, hidden: [] };

export function ImageSeries(props: { runId: string; name: string; entries: MediaEntry[] }) {
  const entries = useMemo(() => props.entries.slice().sort((a, b) => a.step - b.step), [props.entries]);
  const [index, setIndex] = useState(entries.length - 1);
  // held here, not in the image: a new step keeps the threshold and the classes
  const [filter, setFilter] = useState<BoxFilter>(NO_FILTER);
  useEffect(() => setIndex(entries.length - 1), [entries.length]);
  const e = entries[Math.min(index, entries.length - 1)];
  return (
    <div class="media-card" data-testid="image-series" data-name={props.name}>
      <h3>{props.name}</h3>
      <StepSlider steps={entries.map((x) => x.step)} index={index} onIndex={setIndex} testid="image-step" />
      {e && <BoxedImage runId={props.runId} entry={e} filter={filter} onFilter={setFilter} />}
      {e?.caption && <div class="caption">{e.caption}</div>}
    </div>
  );
}

function useStepped(all: MediaEntry[]): [MediaEntry[], number, (i: number) => void, MediaEntry | undefined] {
  const entries = useMemo(() => all.slice().sort((a, b) => a.step - b.step), [all]);
  const [index, setIndex] = useState(entries.length - 1);
  useEffect(() => setIndex(entries.length - 1), [entries.length]);
  return [entries, index, setIndex, entries[Math.min(index, entries.length - 1)]];
}

function fmtSeconds(s: number | undefined): string {
  return typeof s === "number" ? `${s < 10 ? s.toFixed(2) : s.toFixed(1)} s` : "";
}

// Audio (WAV) with a step slider: the browser's own player, its file served as audio/wav.
export function AudioSeries(props: { runId: string; name: string; entries: MediaEntry[] }) {
  const [entries, index, setIndex, e] = useStepped(props.entries);
  return (
    <div class="media-card" data-testid="audio-series" data-name={props.name}>
      <h3>{props.name}</h3>
      <StepSlider steps={entries.map((x) => x.step)} index={index} onIndex={setIndex} testid="audio-step" />
      {e && (
        <>
          {/* keyed by path: a new step loads a new file instead of keeping the old one playing */}
          <audio key={e.path} controls preload="metadata" src={fileUrl(props.runId, e.path)} data-testid="audio" />
          <div class="media-meta muted">
            {[fmtSeconds(e.duration), e.sample_rate ? `${e.sample_rate} Hz` : "", e.channels ? `${e.channels} ch` : ""]
              .filter(Boolean).join(" · ")}
          </div>
          {e.caption && <div class="caption">{e.caption}</div>}
        </>
      )}
    </div>
  );
}

// Video with a step slider: MP4/WebM in a <video> element, a GIF (no encoder installed) as an image.
export function VideoSeries(props: { runId: string; name: string; entries: MediaEntry[] }) {
  const [entries, index, setIndex, e] = useStepped(props.entries);
  const gif = e ? (e.format ?? e.path.split(".").pop()) === "gif" : false;
  const k = e?.width && e?.height ? Math.min(6, 480 / Math.max(e.width, e.height)) : 1;
  const size = e?.width && e?.height ? { width: `${Math.round(e.width * k)}px`, height: `${Math.round(e.height * k)}px` } : undefined;
  return (
    <div class="media-card" data-testid="video-series" data-name={props.name}>
      <h3>{props.name}</h3>
      <StepSlider steps={entries.map((x) => x.step)} index={index} onIndex={setIndex} testid="video-step" />
      {e && (gif ? (
        <img class="video-gif pixelated" style={size} src={fileUrl(props.runId, e.path)} alt={`${e.name} at step ${e.step}`} data-testid="video-gif" />
      ) : (
        <video key={e.path} class="pixelated" style={size} controls loop muted preload="metadata" src={fileUrl(props.runId, e.path)} data-testid="video" />
      ))}
      {e && (
        <div class="media-meta muted">
          {[e.frames ? `${e.frames} frames` : "", e.fps ? `${e.fps} fps` : "", e.width && e.height ? `${e.width}×${e.height}` : "", e.format ?? ""]
            .filter(Boolean).join(" · ")}
        </div>
      )}
      {e?.caption && <div class="caption">{e.caption}</div>}
    </div>
  );
}

// Logged HTML in a sandboxed frame: no scripts, no same-origin access to the dashboard.
export function HtmlSeries(props: { runId: string; name: string; entries: MediaEntry[] }) {
  const [entries, index, setIndex, e] = useStepped(props.entries);
  const [src, setSrc] = useState<string | null>(null);
  useEffect(() => {
    setSrc(null);
    if (e) fetchFileText(props.runId, e.path).then(setSrc).catch((err) => setSrc(`<pre>${String(err.message ?? err)}</pre>`));
  }, [props.runId, e?.path]);
  return (
    <div class="media-card wide" data-testid="html-series" data-name={props.name}>
      <h3>{props.name}</h3>
      <StepSlider steps={entries.map((x) => x.step)} index={index} onIndex={setIndex} />
      {src === null ? <div class="muted">loading…</div> : <iframe class="html-frame" sandbox="" srcdoc={src} title={props.name} />}
    </div>
  );
}

/** An image with its boxes. The threshold and the hidden classes belong to the caller, so
 *  they persist across steps (and across runs, side by side); until the user moves the
 *  threshold, each box file's own `threshold` applies. */
export function BoxedImage({ runId, entry, filter, onFilter, maxSide = 480, controls = true, onClasses }: {
  runId: string;
  entry: MediaEntry;
  filter: BoxFilter;
  onFilter: (f: BoxFilter) => void;
  maxSide?: number;
  /** false: only the count of boxes shown; the caller draws one set of controls for many */
  controls?: boolean;
  /** told the classes of the box file once it is read */
  onClasses?: (classes: string[], threshold: number | undefined) => void;
}) {
  const [boxes, setBoxes] = useState<BoxFile | null>(null);
  const [size, setSize] = useState<{ w: number; h: number } | null>(
    entry.width && entry.height ? { w: entry.width, h: entry.height } : null,
  );
  const hidden = new Set(filter.hidden);
  const threshold = filter.threshold ?? (typeof boxes?.threshold === "number" ? boxes.threshold : 0);
  useEffect(() => {
    if (!entry.boxes) {
      setBoxes(null);
      return;
    }
    let live = true;
    fetchFileText(runId, entry.boxes)
      .then((t) => live && setBoxes(JSON.parse(t) as BoxFile))
      .catch(() => live && setBoxes(null));
    return () => {
      live = false;
    };
  }, [runId, entry.boxes]);
  useEffect(() => {
    if (entry.width && entry.height) setSize({ w: entry.width, h: entry.height });
  }, [entry.width, entry.height]);
  const classes = useMemo(() => {
    const s = new Set<string>(boxes?.classes ?? []);
    for (const b of boxes?.boxes ?? []) if (b.className) s.add(b.className);
    return [...s];
  }, [boxes]);
  useEffect(() => {
    if (boxes && onClasses) onClasses(classes, boxes.threshold);
  }, [boxes]);
  const visible = (boxes?.boxes ?? []).filter(
    (b) => !(b.className && hidden.has(b.className)) && !(typeof b.probability === "number" && b.probability < threshold),
  );
  // Boxes are drawn in screen pixels over the scaled image, so lines and labels stay crisp.
  const k = size ? Math.min(6, maxSide / Math.max(size.w, size.h)) : 1;
  return (
    <div class="boxed-image">
      <div class="image-wrap" style={size ? { width: `${size.w * k}px`, height: `${size.h * k}px` } : undefined}>
        <img
          src={fileUrl(runId, entry.path)}
          alt={`${entry.name} at step ${entry.step}`}
          onLoad={(ev) => {
            const im = ev.target as HTMLImageElement;
            if (!size) setSize({ w: im.naturalWidth, h: im.naturalHeight });
          }}
        />
        {size && boxes && (
          <svg class="boxes" width={size.w * k} height={size.h * k} data-testid="boxes">
            {visible.map((b, i) => {
              const c = classColor(b.className ?? "");
              const label = `${b.className ?? ""}${typeof b.probability === "number" ? ` ${b.probability.toFixed(2)}` : ""}`.trim();
              const x = b.xStart * k;
              const y = b.yStart * k;
              const ly = y >= 16 ? y - 16 : y;
              return (
                <g key={i} class="box" data-class={b.className ?? ""}>
                  <rect x={x} y={y} width={Math.max(0, (b.xEnd - b.xStart) * k)} height={Math.max(0, (b.yEnd - b.yStart) * k)} fill="none" stroke={c} stroke-width="2" />
                  {label && (
                    <>
                      <rect x={x - 1} y={ly} width={label.length * 6.6 + 8} height="16" fill={c} />
                      <text x={x + 3} y={ly + 12} fill="#fff" class="box-label">{label}</text>
                    </>
                  )}
                </g>
              );
            })}
          </svg>
        )}
      </div>
      {boxes && !controls && (
        <div class="muted box-count" data-testid="box-count">{visible.length} of {boxes.boxes.length} boxes</div>
      )}
      {boxes && controls && (
        <BoxControls filter={filter} onFilter={onFilter} classes={classes} threshold={threshold}>
          <span class="muted">{visible.length} of {boxes.boxes.length} boxes</span>
        </BoxControls>
      )}
    </div>
  );
}

/** The threshold slider and the class switches (one image's, or shared by many). */
export function BoxControls(props: {
  filter: BoxFilter;
  onFilter: (f: BoxFilter) => void;
  classes: string[];
  /** the threshold in force (the user's, else a box file's default) */
  threshold: number;
  children?: ComponentChildren;
}) {
  const hidden = new Set(props.filter.hidden);
  return (
    <div class="box-controls">
      <label>
        threshold
        <input
          type="range" min="0" max="1" step="0.01" value={props.threshold} data-testid="threshold"
          onInput={(e) => props.onFilter({ ...props.filter, threshold: Number((e.target as HTMLInputElement).value) })}
        />
        <span class="mono" data-testid="threshold-value">{props.threshold.toFixed(2)}</span>
      </label>
      <span class="classes">
        {props.classes.map((c) => (
          <label key={c} class="class-toggle" style={{ borderColor: classColor(c) }}>
            <input
              type="checkbox" checked={!hidden.has(c)}
              onChange={() => {
                const n = new Set(hidden);
                if (n.has(c)) n.delete(c);
                else n.add(c);
                props.onFilter({ ...props.filter, hidden: [...n] });
              }}
            />
            <span style={{ color: classColor(c) }}>{c}</span>
          </label>
        ))}
      </span>
      {props.children}
    </div>
  );
}

export function TextDiffView({ record }: { record: TextRecord }) {
  const [mode, setMode] = useState<"word" | "char">("word");
  const ops = useMemo(
    () => (record.expected !== undefined && record.expected !== null ? diff(record.expected, record.text, mode) : null),
    [record.text, record.expected, mode],
  );
  return (
    <div class="text-record" data-testid="text-record">
      <div class="text-head">
        <span class="muted">step {fmtStep(record.step)}</span>
        {ops && (
          <span class="diff-mode">
            <label><input type="radio" checked={mode === "word"} onChange={() => setMode("word")} /> words</label>
            <label><input type="radio" checked={mode === "char"} onChange={() => setMode("char")} /> characters</label>
          </span>
        )}
      </div>
      {ops ? (
        <div class="text-diff">
          <div class="text-row"><span class="text-key">text</span><pre class="text-body">{record.text}</pre></div>
          <div class="text-row"><span class="text-key">expected</span><pre class="text-body">{record.expected}</pre></div>
          <div class="text-row">
            <span class="text-key">diff</span>
            <pre class="text-body" data-testid="text-diff">
              {ops.map((o, i) =>
                o.kind === "same" ? <span key={i}>{o.text}</span> : o.kind === "add" ? <ins key={i}>{o.text}</ins> : <del key={i}>{o.text}</del>,
              )}
            </pre>
          </div>
        </div>
      ) : (
        <pre class="text-body">{record.text}</pre>
      )}
    </div>
  );
}

export function TextSeries(props: { name: string; records: TextRecord[] }) {
  return <Stepped name={props.name} items={props.records}>{(r) => <TextDiffView record={r} />}</Stepped>;
}

export function RemoteMarkdown({ runId, path }: { runId: string; path: string }) {
  const [src, setSrc] = useState<string | null>(null);
  const [err, setErr] = useState<string | null>(null);
  useEffect(() => {
    fetchFileText(runId, path).then(setSrc).catch((e) => setErr(String(e.message ?? e)));
  }, [runId, path]);
  if (err) return <div class="error">{err}</div>;
  const dir = path.split("/").slice(0, -1).join("/");
  return src === null ? <div class="muted">loading…</div> : <Markdown source={src} run={runId} dir={dir} />;
}

/** Items logged at several steps (text records, markdown or table files): one step slider
 * over them, the chosen one drawn by `children`. */
export function Stepped<T extends { step: number }>(props: { name: string; items: T[]; children: (item: T) => ComponentChildren }) {
  const items = useMemo(() => props.items.slice().sort((a, b) => a.step - b.step), [props.items]);
  const [index, setIndex] = useState(items.length - 1);
  useEffect(() => setIndex(items.length - 1), [items.length]);
  const item = items[Math.min(index, items.length - 1)];
  return (
    <div class="media-card wide" data-name={props.name}>
      <h3>{props.name}</h3>
      <StepSlider steps={items.map((x) => x.step)} index={index} onIndex={setIndex} />
      {item && props.children(item)}
    </div>
  );
}

export function SteppedMarkdown(props: { runId: string; name: string; entries: MediaEntry[] }) {
  return <Stepped name={props.name} items={props.entries}>{(e) => <RemoteMarkdown runId={props.runId} path={e.path} />}</Stepped>;
}
