import { Link } from "react-router";
import type { Job } from "../../../api/types";
import { Empty, ProgressBar, StatusBadge } from "../../../components/Feedback";
import { formatTime } from "../../../lib/format";

export function JobTable({ jobs }: { jobs: Job[] }) {
  if (jobs.length === 0) return <Empty>No training jobs.</Empty>;
  return (
    <div className="scroll">
      <table>
        <thead>
          <tr>
            <th scope="col">Job</th>
            <th scope="col">Template</th>
            <th scope="col">Status</th>
            <th scope="col">Progress</th>
            <th scope="col">Submitted</th>
          </tr>
        </thead>
        <tbody>
          {jobs.map((job) => (
            <tr key={job.id}>
              <td>
                <Link to={`/jobs/${job.id}`}>{job.name}</Link>
              </td>
              <td>{job.template}</td>
              <td>
                <StatusBadge status={job.status} />
              </td>
              <td>
                <ProgressBar value={job.status === "succeeded" ? 1 : job.progress} label={`Progress of ${job.name}`} />
              </td>
              <td>{formatTime(job.submitted_at)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
