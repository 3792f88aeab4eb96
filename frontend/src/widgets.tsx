// Small shared pieces: status badge, tags, a searchable multi-picker, an error line.
import { useState } from "preact/hooks";
import type { ComponentChildren } from "preact";

export function StatusBadge({ status }: { status: string }) {
  const s = status || "unknown";
  return (
    <span class={`status status-${s}`} title={s} data-status={s}>
      <span class="dot" />
      <span class="status-text">{s}</span>
    </span>
  );
}

export function Tags({ tags }: { tags: string[] }) {
  return (
    <span class="tags">
      {tags.map((t) => (
        <span class="tag" key={t}>{t}</span>
      ))}
    </span>
  );
}

export function ErrorLine({ error }: { error: unknown }) {
  if (!error) return null;
  const msg = error instanceof Error ? error.message : String(error);
  return <div class="error" role="alert">{msg}</div>;
}

export function Picker(props: {
  label: string;
  options: { value: string; group?: string }[];
  selected: string[];
  onChange: (v: string[]) => void;
  testid?: string;
}) {
  const [filter, setFilter] = useState("");
  const f = filter.toLowerCase();
  const shown = props.options.filter((o) => o.value.toLowerCase().includes(f)).slice(0, 300);
  const sel = new Set(props.selected);
  const toggle = (v: string) => {
    if (sel.has(v)) props.onChange(props.selected.filter((x) => x !== v));
    else props.onChange([...props.selected, v]);
  };
  return (
    <details class="picker" data-testid={props.testid}>
      <summary>
        {props.label} {props.selected.length ? <span class="count">{props.selected.length}</span> : null}
      </summary>
      <div class="picker-pop">
        <input type="search" placeholder="filter…" value={filter} onInput={(e) => setFilter((e.target as HTMLInputElement).value)} />
        <div class="picker-list">
          {shown.map((o) => (
            <label key={o.value} class="picker-item">
              <input type="checkbox" checked={sel.has(o.value)} onChange={() => toggle(o.value)} />
              {o.group && <span class="muted">{o.group} </span>}
              <span>{o.value}</span>
            </label>
          ))}
          {!shown.length && <div class="muted">nothing matches</div>}
        </div>
        {props.selected.length > 0 && (
          <button class="small" onClick={() => props.onChange([])}>clear</button>
        )}
      </div>
    </details>
  );
}

export function Section(props: { title: string; children: ComponentChildren; id?: string; right?: ComponentChildren }) {
  return (
    <section class="section" id={props.id}>
      <h2>
        {props.title}
        {props.right && <span class="section-right">{props.right}</span>}
      </h2>
      {props.children}
    </section>
  );
}
