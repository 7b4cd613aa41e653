import { formatNumber } from "../../../lib/format";

interface ColumnReport {
  name: string;
  type: string;
  missing: number;
  missing_ratio: number;
  distinct: number;
  distinct_is_exact: boolean;
  min?: number | null;
  max?: number | null;
  mean?: number | null;
}

interface TextStats {
  lines: number;
  min_length: number | null;
  max_length: number | null;
  mean_length: number | null;
  empty_lines: number;
}

export interface Report {
  format: string;
  rows: number;
  columns: number;
  column_reports: ColumnReport[];
  duplicate_rows: number;
  label_distribution: Record<string, number> | null;
  text_stats: TextStats | null;
  problems: string[];
}

// The quality report as tables and small bars; problems first, where they are seen.
export function QualityReport({ report }: { report: Report }) {
  const labels = Object.entries(report.label_distribution ?? {});
  const most = Math.max(1, ...labels.map(([, count]) => count));
  return (
    <div className="report">
      {report.problems.length > 0 ? (
        <div className="problems" role="alert">
          <h3>Problems</h3>
          <ul>
            {report.problems.map((problem) => (
              <li key={problem}>{problem}</li>
            ))}
          </ul>
        </div>
      ) : (
        <p className="ok">No problems found.</p>
      )}
      <dl className="facts">
        <dt>Format</dt>
        <dd>{report.format}</dd>
        <dt>Rows</dt>
        <dd>{report.rows.toLocaleString()}</dd>
        <dt>Columns</dt>
        <dd>{report.columns}</dd>
        <dt>Duplicate rows</dt>
        <dd className={report.duplicate_rows > 0 ? "warn" : undefined}>{report.duplicate_rows.toLocaleString()}</dd>
      </dl>
      {report.text_stats && (
        <table>
          <caption>Text lines</caption>
          <tbody>
            <tr><th scope="row">Lines</th><td>{report.text_stats.lines.toLocaleString()}</td></tr>
            <tr><th scope="row">Empty lines</th><td>{report.text_stats.empty_lines.toLocaleString()}</td></tr>
            <tr><th scope="row">Shortest</th><td>{formatNumber(report.text_stats.min_length)}</td></tr>
            <tr><th scope="row">Longest</th><td>{formatNumber(report.text_stats.max_length)}</td></tr>
            <tr><th scope="row">Mean length</th><td>{formatNumber(report.text_stats.mean_length, 3)}</td></tr>
          </tbody>
        </table>
      )}
      {report.column_reports.length > 0 && (
        <div className="scroll">
          <table>
            <caption>Columns</caption>
            <thead>
              <tr>
                <th scope="col">Column</th><th scope="col">Type</th><th scope="col">Missing</th><th scope="col">Distinct</th>
                <th scope="col">Min</th><th scope="col">Max</th><th scope="col">Mean</th>
              </tr>
            </thead>
            <tbody>
              {report.column_reports.map((column) => (
                <tr key={column.name} className={column.missing_ratio > 0.05 ? "warn" : undefined}>
                  <th scope="row">{column.name}</th>
                  <td>{column.type}</td>
                  <td>
                    <span className="bar" style={{ width: `${Math.round(column.missing_ratio * 60)}px` }} />
                    {(column.missing_ratio * 100).toFixed(1)}%
                  </td>
                  <td>{column.distinct_is_exact ? "" : "≈"}{column.distinct.toLocaleString()}</td>
                  <td>{formatNumber(column.min)}</td>
                  <td>{formatNumber(column.max)}</td>
                  <td>{formatNumber(column.mean, 3)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {labels.length > 0 && (
        <figure className="labels">
          <figcaption>Labels</figcaption>
          <ul>
            {labels.map(([label, count]) => (
              <li key={label}>
                <span className="label-name">{label}</span>
                <span className="bar" style={{ width: `${Math.round((count / most) * 160)}px` }} aria-hidden="true" />
                <span>{count.toLocaleString()}</span>
              </li>
            ))}
          </ul>
        </figure>
      )}
    </div>
  );
}
