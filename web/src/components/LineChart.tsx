import { useEffect, useRef } from "react";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";

export interface ChartSeries {
  label: string;
  values: (number | null)[];
  color: string;
}

interface LineChartProps {
  title: string;
  x: number[];
  series: ChartSeries[];
  height?: number;
  xTime?: boolean;
  yRange?: [number, number];
}

// A small uPlot line chart that fills its container's width and redraws when data arrives.
export function LineChart({ title, x, series, height = 200, xTime = false, yRange }: LineChartProps) {
  const container = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const shape = `${series.map((s) => s.label).join("|")}|${xTime}`;

  useEffect(() => {
    const element = container.current;
    if (!element) return;
    const options: uPlot.Options = {
      width: Math.max(200, element.clientWidth),
      height,
      scales: { x: { time: xTime }, ...(yRange ? { y: { range: yRange } } : {}) },
      series: [{ label: xTime ? "time" : "step" }, ...series.map((s) => ({ label: s.label, stroke: s.color, width: 2, spanGaps: true }))],
      axes: [{ stroke: "#555" }, { stroke: "#555", size: 56 }],
      legend: { show: series.length > 1 },
    };
    const chart = new uPlot(options, [[], ...series.map(() => [])], element);
    plot.current = chart;
    const observer = new ResizeObserver(() => chart.setSize({ width: Math.max(200, element.clientWidth), height }));
    observer.observe(element);
    return () => {
      observer.disconnect();
      chart.destroy();
      plot.current = null;
    };
    // The chart is rebuilt only when its series change, not for every new point.
  }, [shape, height]);

  useEffect(() => {
    plot.current?.setData([x, ...series.map((s) => s.values)] as uPlot.AlignedData);
  }, [x, series, shape]);

  return (
    <figure className="chart">
      <figcaption>{title}</figcaption>
      <div ref={container} role="img" aria-label={title} />
    </figure>
  );
}
