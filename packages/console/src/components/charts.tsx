// Small hand-drawn SVG charts. Hand-written rather than a chart library: three shapes (bars,
// a sparkline, a stacked timeline) in ~100 lines, where a library would add 40-200 KB to a
// bundle capped at 250 KB. Every chart has a text equivalent (role="img" + aria-label, and the
// numbers printed beside the bars): a chart never carries information text does not.
import type { ComponentChildren } from 'preact';

export interface Bar {
  label: string;
  value: number;
  cls: string;
  /** Printed after the bar (defaults to the value). */
  text?: string;
  icon?: string;
}

export function BarChart({ bars, title }: { bars: Bar[]; title: string }) {
  const max = Math.max(1, ...bars.map((b) => b.value));
  return (
    <ul class="bars" aria-label={title}>
      {bars.map((b) => (
        <li key={b.label}>
          <span class="bar-label">
            {b.icon ? <span aria-hidden="true">{b.icon} </span> : null}
            {b.label}
          </span>
          <svg class="bar-track" viewBox="0 0 100 10" preserveAspectRatio="none" aria-hidden="true">
            <rect class={`bar ${b.cls}`} x="0" y="0" height="10" width={b.value === 0 ? 0 : Math.max(1.5, (b.value / max) * 100)} />
          </svg>
          <span class="bar-value">{b.text ?? String(b.value)}</span>
        </li>
      ))}
    </ul>
  );
}

/** A line of recent values; `max` fixes the y scale (e.g. a limit), else the data's max. */
export function Sparkline({ values, label, max, unit }: { values: number[]; label: string; max?: number; unit: (v: number) => string }) {
  const w = 240;
  const h = 48;
  const top = Math.max(max ?? 0, ...values, 1e-9);
  const step = values.length > 1 ? w / (values.length - 1) : w;
  const pts = values.map((v, i) => `${(i * step).toFixed(1)},${(h - (v / top) * (h - 2) - 1).toFixed(1)}`).join(' ');
  const last = values.length ? values[values.length - 1]! : undefined;
  const summary = values.length
    ? `${label}: now ${unit(last!)}, min ${unit(Math.min(...values))}, max ${unit(Math.max(...values))} over the last ${values.length} readings`
    : `${label}: no readings yet`;
  return (
    <figure class="spark">
      <figcaption>
        {label}: <strong>{last === undefined ? '—' : unit(last)}</strong>
      </figcaption>
      <svg viewBox={`0 0 ${w} ${h}`} width={w} height={h} role="img" aria-label={summary}>
        <rect class="spark-bg" x="0" y="0" width={w} height={h} />
        {values.length > 1 ? <polyline class="spark-line" points={pts} fill="none" /> : null}
        {values.length === 1 ? <circle class="spark-dot" cx={w / 2} cy={h - (values[0]! / top) * (h - 2) - 1} r="2.5" /> : null}
      </svg>
    </figure>
  );
}

export interface TimelineSeries {
  label: string;
  cls: string;
  icon: string;
  /** Counts per bucket, oldest first. */
  counts: number[];
}

/** Stacked columns per time bucket (e.g. 24 hours), with a legend naming each series. */
export function Timeline({ series, buckets, title, axis }: { series: TimelineSeries[]; buckets: number; title: string; axis: ComponentChildren }) {
  const w = 480;
  const h = 80;
  const totals = Array.from({ length: buckets }, (_, i) => series.reduce((s, x) => s + (x.counts[i] ?? 0), 0));
  const max = Math.max(1, ...totals);
  const bw = w / buckets;
  const sums = series.map((s) => s.counts.reduce((a, b) => a + b, 0));
  const summary = `${title}: ${series.map((s, i) => `${sums[i]} ${s.label}`).join(', ')}; busiest hour ${Math.max(0, ...totals)} events`;
  return (
    <figure class="timeline">
      <svg viewBox={`0 0 ${w} ${h}`} preserveAspectRatio="none" role="img" aria-label={summary}>
        <rect class="spark-bg" x="0" y="0" width={w} height={h} />
        {Array.from({ length: buckets }, (_, i) => {
          let y = h;
          return series.map((s) => {
            const c = s.counts[i] ?? 0;
            if (!c) return null;
            const bh = (c / max) * (h - 4);
            y -= bh;
            return <rect key={`${s.label}-${i}`} class={`bar ${s.cls}`} x={i * bw + 1} y={y} width={Math.max(1, bw - 2)} height={bh} />;
          });
        })}
      </svg>
      <figcaption>
        <span class="axis">{axis}</span>
        <span class="legend">
          {series.map((s, i) => (
            <span key={s.label} class={`legend-item ${s.cls}`}>
              <span aria-hidden="true">{s.icon}</span> {s.label}: {sums[i]}
            </span>
          ))}
        </span>
      </figcaption>
    </figure>
  );
}
