// Read-only YAML with simple highlighting: comments, keys, list dashes and quoted strings get a
// class; the text itself is kept exactly (a copy-paste gives the document back). Hand-written,
// line by line, instead of a highlighting library: the console shows one read-only language and
// a general highlighter would weigh more than the whole view (the bundle budget is 250 KB).
import type { ComponentChildren } from 'preact';

const KEY = /^(\s*(?:-\s+)?)([A-Za-z0-9_.\-"']+)(:)(?=\s|$)/;

function highlightLine(line: string): ComponentChildren {
  const hash = commentStart(line);
  const code = hash < 0 ? line : line.slice(0, hash);
  const comment = hash < 0 ? '' : line.slice(hash);
  const parts: ComponentChildren[] = [];
  const m = KEY.exec(code);
  let rest = code;
  if (m) {
    const [all, lead, key, colon] = m;
    parts.push(lead!.replace(/-/, '') === lead ? lead : <span class="y-dash">{lead}</span>);
    parts.push(<span class="y-key">{key}</span>, colon);
    rest = code.slice(all.length);
  } else {
    const dash = /^(\s*-\s)/.exec(code);
    if (dash) {
      parts.push(<span class="y-dash">{dash[1]}</span>);
      rest = code.slice(dash[1]!.length);
    }
  }
  if (/^\s*(".*"|'.*')\s*$/.test(rest)) parts.push(<span class="y-str">{rest}</span>);
  else if (/^\s*(true|false|null|-?\d+(\.\d+)?)\s*$/.test(rest)) parts.push(<span class="y-lit">{rest}</span>);
  else parts.push(rest);
  if (comment) parts.push(<span class="y-comment">{comment}</span>);
  return parts;
}

/** Index of a `#` that starts a comment (not inside quotes), or -1. */
function commentStart(line: string): number {
  let quote: string | null = null;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (quote) {
      if (c === quote) quote = null;
    } else if (c === '"' || c === "'") quote = c;
    else if (c === '#' && (i === 0 || /\s/.test(line[i - 1]!))) return i;
  }
  return -1;
}

export function YamlView({ text, label }: { text: string; label: string }) {
  const lines = text.replace(/\n$/, '').split('\n');
  return (
    <pre class="yaml" tabIndex={0} aria-label={label}>
      <code>
        {lines.map((l, i) => (
          <span class="y-line" key={i}>
            {highlightLine(l)}
            {'\n'}
          </span>
        ))}
      </code>
    </pre>
  );
}
