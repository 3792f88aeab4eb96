// Word or character diff of a text against the expected text (longest common subsequence).

export type Op = { kind: "same" | "add" | "del"; text: string };

export function tokenize(s: string, mode: "word" | "char"): string[] {
  if (mode === "char") return Array.from(s);
  return s.split(/(\s+)/).filter((t) => t.length > 0);
}

const MAX_CELLS = 4_000_000;

/** Ops turning `expected` into `actual`: `del` is expected but missing, `add` is extra. */
export function diff(expected: string, actual: string, mode: "word" | "char"): Op[] {
  const a = tokenize(expected, mode);
  const b = tokenize(actual, mode);
  // Common prefix and suffix are cheap and keep the table small.
  let pre = 0;
  while (pre < a.length && pre < b.length && a[pre] === b[pre]) pre++;
  let suf = 0;
  while (suf < a.length - pre && suf < b.length - pre && a[a.length - 1 - suf] === b[b.length - 1 - suf]) suf++;
  const am = a.slice(pre, a.length - suf);
  const bm = b.slice(pre, b.length - suf);
  const ops: Op[] = [];
  const push = (kind: Op["kind"], text: string) => {
    const last = ops[ops.length - 1];
    if (last && last.kind === kind) last.text += text;
    else if (text) ops.push({ kind, text });
  };
  push("same", a.slice(0, pre).join(""));
  const n = am.length;
  const m = bm.length;
  if ((n + 1) * (m + 1) > MAX_CELLS) {
    push("del", am.join(""));
    push("add", bm.join(""));
  } else {
    // lcs[i][j]: length of the LCS of am[i:] and bm[j:]
    const w = m + 1;
    const lcs = new Uint32Array((n + 1) * w);
    for (let i = n - 1; i >= 0; i--) {
      for (let j = m - 1; j >= 0; j--) {
        lcs[i * w + j] = am[i] === bm[j] ? lcs[(i + 1) * w + j + 1] + 1 : Math.max(lcs[(i + 1) * w + j], lcs[i * w + j + 1]);
      }
    }
    let i = 0;
    let j = 0;
    while (i < n && j < m) {
      if (am[i] === bm[j]) {
        push("same", am[i]);
        i++;
        j++;
      } else if (lcs[(i + 1) * w + j] >= lcs[i * w + j + 1]) {
        push("del", am[i++]);
      } else {
        push("add", bm[j++]);
      }
    }
    while (i < n) push("del", am[i++]);
    while (j < m) push("add", bm[j++]);
  }
  push("same", a.slice(a.length - suf).join(""));
  return ops;
}
