import { Link, useParams } from "react-router";
import { EventList } from "../../../components/EventList";
import { ErrorMessage, Loading } from "../../../components/Feedback";
import { historyPath, useResourceHistory } from "../api/admin";

export function HistoryPage() {
  const { resourceType = "", resourceId = "" } = useParams();
  const history = useResourceHistory(resourceType, resourceId);
  return (
    <section>
      <p className="crumbs">
        <Link to={`/admin/audit?resource_type=${resourceType}&resource_id=${resourceId}`}>Audit log</Link> / history
      </p>
      <h1>
        History of {resourceType} <span className="mono">{resourceId}</span>
      </h1>
      {!historyPath(resourceType, resourceId) ? (
        <p className="empty">This kind of resource has no history view.</p>
      ) : history.error ? (
        <ErrorMessage error={history.error} />
      ) : !history.data ? (
        <Loading what="the history" />
      ) : (
        <EventList events={history.data.items} />
      )}
    </section>
  );
}
