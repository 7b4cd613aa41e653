import { Link, useSearchParams } from "react-router";
import { ErrorMessage, Loading } from "../../../components/Feedback";
import { Pagination } from "../../../components/Pagination";
import { useJobs } from "../api/training";
import { JobTable } from "./JobTable";

const STATUSES = ["pending", "running", "succeeded", "failed", "cancelled"];

export function JobsPage() {
  const [params, setParams] = useSearchParams();
  const status = params.get("status") ?? "";
  const page = Number(params.get("page") ?? 1);
  const jobs = useJobs({ status: status || undefined, page });
  return (
    <section>
      <div className="page-head">
        <h1>Training jobs</h1>
        <Link className="button primary" to="/jobs/new">
          Train a model
        </Link>
      </div>
      <div className="filters">
        <label>
          Status
          <select value={status} onChange={(e) => setParams(e.target.value ? { status: e.target.value } : {}, { replace: true })}>
            <option value="">any</option>
            {STATUSES.map((s) => (
              <option key={s}>{s}</option>
            ))}
          </select>
        </label>
      </div>
      <ErrorMessage error={jobs.error} />
      {jobs.data ? <JobTable jobs={jobs.data.items} /> : <Loading what="jobs" />}
      <Pagination meta={jobs.data?.meta} onPage={(p) => setParams({ ...(status ? { status } : {}), page: String(p) })} />
    </section>
  );
}
