import { ErrorMessage, Loading } from "../../../components/Feedback";
import { TimeTravelHistory } from "../../../components/TimeTravelHistory";
import { useProjectHistory } from "../api/projects";

export function HistoryTimeline({ projectId }: { projectId: string }) {
  const history = useProjectHistory(projectId);
  if (history.error) return <ErrorMessage error={history.error} />;
  if (!history.data) return <Loading what="the history" />;
  return <TimeTravelHistory events={history.data.items} resourcePath={`/projects/${projectId}`} />;
}
