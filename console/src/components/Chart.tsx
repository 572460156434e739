// A time series chart (uPlot: ~50 KB, canvas, made for many points and live updates; see
// docs/console.md for why).
import { useEffect, useRef } from "preact/hooks";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";

export function Chart(props: { title: string; unit: string; times: number[]; values: number[] }) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  useEffect(() => {
    if (!box.current) return;
    const width = Math.max(260, Math.min(560, box.current.clientWidth || 560));
    plot.current = new uPlot(
      {
        width,
        height: 180,
        // Always the last hour, however few minutes have reports.
        scales: { x: { time: true, range: () => [Date.now() / 1000 - 3600, Date.now() / 1000] } },
        series: [{}, { label: props.unit, stroke: "#2563eb", width: 2, fill: "rgba(37,99,235,0.08)", points: { show: true } }],
        axes: [{}, { size: 60 }],
        legend: { show: false },
      },
      [props.times, props.values],
      box.current,
    );
    return () => {
      plot.current?.destroy();
      plot.current = null;
    };
  }, []);
  useEffect(() => {
    plot.current?.setData([props.times, props.values]);
  }, [props.times, props.values]);
  const last = props.values.length ? props.values[props.values.length - 1] : undefined;
  return (
    <figure class="chart">
      <figcaption>
        {props.title}
        <span class="muted"> {last === undefined ? "no data yet" : `${last.toLocaleString(undefined, { maximumFractionDigits: 1 })} ${props.unit}`}</span>
      </figcaption>
      <div ref={box} role="img" aria-label={`${props.title} over the last hour`} />
    </figure>
  );
}
