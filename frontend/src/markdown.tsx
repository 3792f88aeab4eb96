// Markdown from runs is untrusted: parsed by marked, then sanitised by DOMPurify before it
// touches the DOM. No script, event handler or javascript: URL survives; the page's
// Content-Security-Policy is a second wall.
import DOMPurify from "dompurify";
import { marked } from "marked";
import { useEffect, useRef } from "preact/hooks";
import { fileUrl } from "./api";

export interface RunContext {
  run: string;
  dir: string; // the markdown file's folder inside the run
}

// Set only while DOMPurify.sanitize runs (synchronously) for one document.
let context: RunContext | null = null;

DOMPurify.addHook("afterSanitizeAttributes", (node) => {
  if (node instanceof HTMLAnchorElement) {
    node.setAttribute("target", "_blank");
    node.setAttribute("rel", "noopener noreferrer");
  }
  // A relative image path names a file of the run (other images are blocked by the CSP).
  if (context && node instanceof HTMLImageElement) {
    const src = node.getAttribute("src") ?? "";
    if (!/^[a-z][a-z0-9+.-]*:|^\/|^#/i.test(src)) {
      const path = joinRunPath(context.dir, src.split(/[?#]/)[0]);
      if (path) node.setAttribute("src", fileUrl(context.run, path));
      else node.removeAttribute("src");
    }
  }
});

/** Joins a relative path onto a folder of the run; null when it would leave the run. */
export function joinRunPath(dir: string, rel: string): string | null {
  const parts = dir ? dir.split("/") : [];
  for (const p of rel.split("/")) {
    if (p === "" || p === ".") continue;
    if (p === "..") {
      if (!parts.length) return null;
      parts.pop();
    } else parts.push(p);
  }
  return parts.length ? parts.join("/") : null;
}

export function renderMarkdown(src: string, ctx: RunContext | null = null): string {
  const html = marked.parse(src, { async: false, gfm: true }) as string;
  context = ctx;
  try {
    return DOMPurify.sanitize(html, { USE_PROFILES: { html: true }, FORBID_TAGS: ["style", "form", "input", "button"] });
  } finally {
    context = null;
  }
}

export function Markdown({ source, run, dir }: { source: string; run?: string; dir?: string }) {
  const el = useRef<HTMLDivElement>(null);
  useEffect(() => {
    if (el.current) el.current.innerHTML = renderMarkdown(source, run === undefined ? null : { run, dir: dir ?? "" });
  }, [source, run, dir]);
  return <div class="markdown" ref={el} />;
}
