import { Link, useParams } from "react-router";
import { ErrorMessage, Loading } from "../../../components/Feedback";
import { TimeTravelHistory } from "../../../components/TimeTravelHistory";
import { historyPath, useResourceHistory } from "../api/admin";

export function HistoryPage() {
  const { resourceType = "", resourceId = "" } = useParams();
  const history = useResourceHistory(resourceType, resourceId);
  const path = historyPath(resourceType, resourceId);
  return (
    <section>
      <p className="crumbs">
        <Link to={`/admin/audit?resource_type=${resourceType}&resource_id=${resourceId}`}>Audit log</Link> / history
      </p>
      <h1>
        History of {resourceType} <span className="mono">{resourceId}</span>
      </h1>
      {!path ? (
        <p className="empty">This kind of resource has no history view.</p>
      ) : history.error ? (
        <ErrorMessage error={history.error} />
      ) : !history.data ? (
        <Loading what="the history" />
      ) : (
        <TimeTravelHistory events={history.data.items} resourcePath={path.replace(/\/history$/, "")} />
      )}
    </section>
  );
}
