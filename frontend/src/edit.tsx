// Writing from the browser: a run's comment, tags and notes (docs/dashboard.md). Every
// change goes through PATCH /api/v1/runs/{id}/meta; a server with tokens asks for one with
// the write scope (kept for this tab only).
import { useState } from "preact/hooks";
import { ApiError, fetchRun, MetaEdit, MetaResult, patchMeta, RunDetail, setWriteToken, writeToken } from "./api";
import { Markdown } from "./markdown";
import { Tags } from "./widgets";

/** The window event sent after a run's comment, tags or notes were saved (detail: MetaResult):
 * the runs table shows the change without asking the server again. */
export const RUN_EDITED = "labtrack:run-edited";

function announce(r: MetaResult): void {
  window.dispatchEvent(new CustomEvent<MetaResult>(RUN_EDITED, { detail: r }));
}

/** Tags as typed: comma-separated, trimmed, empty ones and repeats dropped. */
export function parseTags(text: string): string[] {
  return [...new Set(text.split(",").map((t) => t.trim()).filter(Boolean))];
}

function needsToken(e: unknown): boolean {
  // 401: no token or an unknown one; 403 "the token lacks the 'write' scope". Other 403s
  // (another origin, `labtrack ui` reached from another machine) no token can help.
  return e instanceof ApiError && (e.status === 401 || (e.status === 403 && /lacks the .* scope/.test(e.message)));
}

/** Sends an edit; on a server that wants a write token, shows a field for one and retries. */
function useSave(run: RunDetail, onSaved: (r: MetaResult) => void) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [askToken, setAskToken] = useState(false);
  const save = async (edit: MetaEdit): Promise<boolean> => {
    setBusy(true);
    setError(null);
    try {
      const r = await patchMeta(run.id, edit);
      announce(r);
      onSaved(r);
      setAskToken(false);
      return true;
    } catch (e) {
      setError(e);
      if (needsToken(e)) setAskToken(true);
      return false;
    } finally {
      setBusy(false);
    }
  };
  return { busy, error, askToken, save };
}

function SaveProblem({ error, askToken }: { error: unknown; askToken: boolean }) {
  const [token, setToken] = useState(writeToken());
  if (!error) return null;
  const msg = error instanceof Error ? error.message : String(error);
  return (
    <div class="edit-problem" role="alert" data-testid="edit-error">
      <span class="error">{msg}</span>
      {askToken && (
        <label class="token-field">
          write token{" "}
          <input type="password" value={token} autocomplete="off" data-testid="write-token"
            placeholder="lt_… (labtrack token create NAME --write)"
            onInput={(e) => {
              const v = (e.target as HTMLInputElement).value.trim();
              setToken(v);
              setWriteToken(v);
            }} />
          <span class="muted"> then save again</span>
        </label>
      )}
    </div>
  );
}

/** The comment and tags under the run's title, with an editor behind "edit". */
export function CommentAndTags({ run, onSaved }: { run: RunDetail; onSaved: (r: MetaResult) => void }) {
  const [editing, setEditing] = useState(false);
  const [comment, setComment] = useState("");
  const [tags, setTags] = useState("");
  const { busy, error, askToken, save } = useSave(run, onSaved);
  const running = run.status === "running";
  if (!editing) {
    return (
      <div class="run-meta" data-testid="run-meta">
        {run.comment ? <div class="run-comment" data-testid="run-comment">{run.comment}</div>
          : <span class="muted">no comment</span>}
        <button class="small" data-testid="edit-meta" disabled={running}
          title={running ? "a running run's comment and tags change when it has finished (its writer owns run.json)" : "edit the comment and tags"}
          onClick={() => {
            setComment(run.comment ?? "");
            setTags(run.tags.join(", "));
            setEditing(true);
          }}>edit comment & tags</button>
      </div>
    );
  }
  const submit = async (e: Event) => {
    e.preventDefault();
    if (await save({ comment, tags: parseTags(tags) })) setEditing(false);
  };
  return (
    <form class="meta-form" data-testid="meta-form" onSubmit={submit}>
      <label>comment
        <textarea rows={2} value={comment} data-testid="comment-input" maxLength={10000}
          onInput={(e) => setComment((e.target as HTMLTextAreaElement).value)} />
      </label>
      <label><span>tags <span class="muted">(separated by commas)</span></span>
        <input value={tags} data-testid="tags-input" onInput={(e) => setTags((e.target as HTMLInputElement).value)} />
      </label>
      <div class="tags-preview"><Tags tags={parseTags(tags)} /></div>
      <div class="form-buttons">
        <button type="submit" class="primary" disabled={busy} data-testid="save-meta">{busy ? "saving…" : "save"}</button>
        <button type="button" onClick={() => setEditing(false)}>cancel</button>
      </div>
      <SaveProblem error={error} askToken={askToken} />
    </form>
  );
}

/** The run's notes (markdown), rendered, with an editor and a live preview behind "edit". */
export function Notes({ run, onSaved }: { run: RunDetail; onSaved: (r: MetaResult) => void }) {
  const [draft, setDraft] = useState<string | null>(null);
  const { busy, error, askToken, save } = useSave(run, onSaved);
  const notes = run.notes ?? "";
  if (draft === null) {
    return (
      <div data-testid="notes">
        {notes ? <Markdown source={notes} run={run.id} dir="" /> : <div class="muted">No notes yet.</div>}
        <button class="small" data-testid="edit-notes" onClick={() => setDraft(notes)}>{notes ? "edit notes" : "write notes"}</button>
      </div>
    );
  }
  return (
    <form class="notes-form" data-testid="notes-form" onSubmit={async (e) => {
      e.preventDefault();
      if (await save({ notes: draft })) setDraft(null);
    }}>
      <div class="notes-edit">
        <textarea value={draft} rows={12} data-testid="notes-input" placeholder="Markdown: # heading, **bold**, - lists, [links](https://…)"
          onInput={(e) => setDraft((e.target as HTMLTextAreaElement).value)} />
        <div class="notes-preview" data-testid="notes-preview">
          {draft ? <Markdown source={draft} run={run.id} dir="" /> : <span class="muted">preview</span>}
        </div>
      </div>
      <div class="form-buttons">
        <button type="submit" class="primary" disabled={busy} data-testid="save-notes">{busy ? "saving…" : "save notes"}</button>
        <button type="button" onClick={() => setDraft(null)}>cancel</button>
      </div>
      <SaveProblem error={error} askToken={askToken} />
    </form>
  );
}

/** Add a tag to (or remove it from) the ticked runs of the table. A running run is skipped
 * (its comment and tags change once it has finished) and said so. */
export function TagTicked({ ids }: { ids: string[] }) {
  const [open, setOpen] = useState(false);
  const [tag, setTag] = useState("");
  const [busy, setBusy] = useState(false);
  const [note, setNote] = useState("");
  const [error, setError] = useState<unknown>(null);
  const [askToken, setAskToken] = useState(false);
  if (!ids.length) return null;
  const apply = async (remove: boolean) => {
    const t = tag.trim();
    if (!t) return;
    setBusy(true);
    setError(null);
    setNote("");
    let done = 0;
    const skipped: string[] = [];
    try {
      for (const id of ids) {
        const run = await fetchRun(id);
        const tags = remove ? run.tags.filter((x) => x !== t) : run.tags.includes(t) ? run.tags : [...run.tags, t];
        if (tags.length === run.tags.length && tags.every((x, i) => x === run.tags[i])) {
          done++;
          continue;
        }
        try {
          announce(await patchMeta(id, { tags }));
          done++;
        } catch (e) {
          if (e instanceof ApiError && e.status === 409) skipped.push(run.name || id);
          else throw e;
        }
      }
      setNote(`${remove ? "removed from" : "tagged"} ${done} run${done === 1 ? "" : "s"}` +
        (skipped.length ? `; still running, not changed: ${skipped.join(", ")}` : ""));
      setAskToken(false);
    } catch (e) {
      setError(e);
      if (needsToken(e)) setAskToken(true);
    } finally {
      setBusy(false);
    }
  };
  return (
    <span class="tag-ticked">
      <button data-testid="tag-ticked" onClick={() => setOpen(!open)} title="add a tag to the ticked runs, or remove one">
        tag {ids.length}
      </button>
      {open && (
        <div class="tag-pop" data-testid="tag-pop">
          <input value={tag} placeholder="tag" data-testid="tag-ticked-input" onInput={(e) => setTag((e.target as HTMLInputElement).value)}
            onKeyDown={(e) => e.key === "Enter" && apply(false)} />
          <button class="primary" disabled={busy || !tag.trim()} onClick={() => apply(false)} data-testid="tag-ticked-add">add</button>
          <button disabled={busy || !tag.trim()} onClick={() => apply(true)} data-testid="tag-ticked-remove">remove</button>
          {note && <div class="muted" data-testid="tag-ticked-note">{note}</div>}
          <SaveProblem error={error} askToken={askToken} />
        </div>
      )}
    </span>
  );
}
