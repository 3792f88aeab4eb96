// Media across runs: one logged image (or text) of several runs side by side, under one step
// slider. Each run shows what it logged at the chosen step, or at its last step before it.
// The box threshold and the hidden classes are one setting for every run and every step.
import { useEffect, useMemo, useState } from "preact/hooks";
import { fetchMedia, fetchText, MediaEntry, RunDetail, TextRecord } from "./api";
import { fmtStep } from "./format";
import { BoxControls, BoxedImage, BoxFilter, StepSlider, TextDiffView } from "./media";
import { listParam, updateParams } from "./route";

/** At most this many runs side by side. */
export const MAX_SIDE_BY_SIDE = 12;
const IMAGE_KINDS = ["image", "figure", "animation"];

export interface SideRun {
  id: string;
  label: string;
  color: string;
}

/** The last item at or before `step` of a list sorted by step (undefined: none yet). */
export function atStep<T extends { step: number }>(sorted: T[], step: number): T | undefined {
  let found: T | undefined;
  for (const x of sorted) {
    if (x.step > step) break;
    found = x;
  }
  return found;
}

function unionSteps(lists: { step: number }[][]): number[] {
  return [...new Set(lists.flatMap((l) => l.map((x) => x.step)))].sort((a, b) => a - b);
}

/** The slider's index for a step from the URL (the last step when absent or unknown). */
function indexOf(steps: number[], raw: string | null): number {
  const want = raw === null ? NaN : Number(raw);
  const i = steps.indexOf(want);
  return i >= 0 ? i : steps.length - 1;
}

function RunHead({ run, step, want }: { run: SideRun; step: number | undefined; want: number }) {
  return (
    <div class="side-head">
      <span class="swatch" style={{ background: run.color }} />
      <a href={`#/run/${encodeURIComponent(run.id)}`} class="side-name" title={run.label}>{run.label}</a>
      <span class={`muted side-step${step !== undefined && step !== want ? " earlier" : ""}`} data-testid="side-step">
        {step === undefined ? "" : `step ${fmtStep(step)}`}
      </span>
    </div>
  );
}

export function MediaAcrossRuns(props: { runs: SideRun[]; details: Map<string, RunDetail>; params: URLSearchParams }) {
  const runs = props.runs.slice(0, MAX_SIDE_BY_SIDE);
  const key = runs.map((r) => r.id).join(",");
  const [media, setMedia] = useState<Map<string, MediaEntry[]>>(new Map());
  useEffect(() => {
    const ctl = { live: true };
    const missing = runs.filter((r) => !media.has(r.id));
    Promise.all(missing.map((r) => fetchMedia(r.id).catch((): MediaEntry[] => []).then((m): [string, MediaEntry[]] => [r.id, m])))
      .then((got) => {
        if (!ctl.live || !got.length) return;
        setMedia((old) => new Map([...old.entries(), ...got]));
      });
    return () => {
      ctl.live = false;
    };
  }, [key]);
  const extra = props.runs.length - runs.length;
  return (
    <div class="media-across" data-testid="media-across">
      {extra > 0 && <div class="muted">the first {runs.length} of {props.runs.length} charted runs</div>}
      <ImagesAcross runs={runs} media={media} params={props.params} />
      <TextAcross runs={runs} details={props.details} params={props.params} />
    </div>
  );
}

function ImagesAcross({ runs, media, params }: { runs: SideRun[]; media: Map<string, MediaEntry[]>; params: URLSearchParams }) {
  const byRun = useMemo(() => {
    const m = new Map<string, MediaEntry[]>();
    for (const r of runs) m.set(r.id, (media.get(r.id) ?? []).filter((e) => IMAGE_KINDS.includes(e.kind)));
    return m;
  }, [runs.map((r) => r.id).join(","), media]);
  const names = [...new Set([...byRun.values()].flatMap((l) => l.map((e) => e.name)))].sort();
  const name = params.get("mimg") && names.includes(params.get("mimg")!) ? params.get("mimg")! : names[0];
  const series = runs.map((r) => (byRun.get(r.id) ?? []).filter((e) => e.name === name).sort((a, b) => a.step - b.step));
  const steps = unionSteps(series);
  const index = indexOf(steps, params.get("mstep"));
  const step = steps[index];
  const filter: BoxFilter = {
    threshold: params.get("mthr") === null || !Number.isFinite(Number(params.get("mthr"))) ? null : Number(params.get("mthr")),
    hidden: listParam(params, "mhide"),
  };
  const onFilter = (f: BoxFilter) => updateParams({ mthr: f.threshold === null ? null : String(f.threshold), mhide: f.hidden.join(",") || null });
  // the classes of every box file seen, and the first file's own threshold (the default)
  const [classes, setClasses] = useState<string[]>([]);
  const [fileThreshold, setFileThreshold] = useState<number | undefined>(undefined);
  const onClasses = (cs: string[], t: number | undefined) => {
    setClasses((old) => (cs.every((c) => old.includes(c)) ? old : [...new Set([...old, ...cs])]));
    if (t !== undefined) setFileThreshold((old) => old ?? t);
  };
  const side = runs.length <= 2 ? 420 : runs.length <= 4 ? 300 : 220;
  return (
    <div class="side-panel" data-testid="images-across">
      <div class="side-controls">
        <b>images</b>
        {names.length > 0 ? (
          <select value={name} data-testid="images-name" onChange={(e) => updateParams({ mimg: (e.target as HTMLSelectElement).value, mstep: null })}>
            {names.map((n) => <option key={n} value={n}>{n}</option>)}
          </select>
        ) : (
          <span class="muted">none of these runs logged an image</span>
        )}
        {steps.length > 0 && (
          <StepSlider steps={steps} index={index} testid="images-step" onIndex={(i) => updateParams({ mstep: String(steps[i]) })} />
        )}
      </div>
      {classes.length > 0 && (
        <BoxControls filter={filter} onFilter={onFilter} classes={classes} threshold={filter.threshold ?? fileThreshold ?? 0}>
          <span class="muted">{filter.threshold === null ? "each image's own threshold" : "for every run and step"}</span>
        </BoxControls>
      )}
      {names.length > 0 && (
        <div class="side-grid">
          {runs.map((r, i) => {
            const e = step === undefined ? undefined : atStep(series[i], step);
            return (
              <div key={r.id} class="side-card" data-testid="side-image" data-run={r.id}>
                <RunHead run={r} step={e?.step} want={step} />
                {e ? (
                  <BoxedImage runId={r.id} entry={e} filter={filter} onFilter={onFilter} maxSide={side} controls={false} onClasses={onClasses} />
                ) : (
                  <div class="muted side-none">{series[i].length ? `nothing by step ${fmtStep(step)}` : `no ${name}`}</div>
                )}
                {e?.caption && <div class="caption">{e.caption}</div>}
              </div>
            );
          })}
        </div>
      )}
    </div>
  );
}

function TextAcross({ runs, details, params }: { runs: SideRun[]; details: Map<string, RunDetail>; params: URLSearchParams }) {
  const named = runs.map((r) => details.get(r.id)?.named?.text ?? []);
  const names = [...new Set(named.flatMap((l) => l.map((n) => n.name)))].sort();
  const name = params.get("mtxt") && names.includes(params.get("mtxt")!) ? params.get("mtxt")! : names[0];
  const paths = runs.map((_, i) => named[i].find((n) => n.name === name)?.path ?? null);
  const pathKey = runs.map((r, i) => `${r.id}:${paths[i] ?? ""}`).join(",");
  const [records, setRecords] = useState<Map<string, TextRecord[]>>(new Map());
  useEffect(() => {
    let live = true;
    Promise.all(runs.map((r, i) => {
      const p = paths[i];
      if (!p) return Promise.resolve([r.id, [] as TextRecord[]] as const);
      return fetchText(r.id, p).then((recs) => [r.id, recs.slice().sort((a, b) => a.step - b.step)] as const).catch(() => [r.id, [] as TextRecord[]] as const);
    })).then((got) => live && setRecords(new Map(got)));
    return () => {
      live = false;
    };
  }, [pathKey]);
  const series = runs.map((r) => records.get(r.id) ?? []);
  const steps = unionSteps(series);
  const index = indexOf(steps, params.get("tstep"));
  const step = steps[index];
  return (
    <div class="side-panel" data-testid="text-across">
      <div class="side-controls">
        <b>text</b>
        {names.length > 0 ? (
          <select value={name} data-testid="text-name" onChange={(e) => updateParams({ mtxt: (e.target as HTMLSelectElement).value, tstep: null })}>
            {names.map((n) => <option key={n} value={n}>{n}</option>)}
          </select>
        ) : (
          <span class="muted">none of these runs logged text</span>
        )}
        {steps.length > 0 && (
          <StepSlider steps={steps} index={index} testid="text-step" onIndex={(i) => updateParams({ tstep: String(steps[i]) })} />
        )}
      </div>
      {names.length > 0 && (
        <div class="side-grid text">
          {runs.map((r, i) => {
            const rec = step === undefined ? undefined : atStep(series[i], step);
            return (
              <div key={r.id} class="side-card" data-testid="side-text" data-run={r.id}>
                <RunHead run={r} step={rec?.step} want={step} />
                {rec ? <TextDiffView record={rec} /> : <div class="muted side-none">{paths[i] ? `nothing by step ${fmtStep(step)}` : `no ${name}`}</div>}
              </div>
            );
          })}
        </div>
      )}
    </div>
  );
}
