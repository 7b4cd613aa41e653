import { Empty, ErrorMessage, Loading } from "../../../components/Feedback";
import { formatTime } from "../../../lib/format";
import { useMarkRead, useNotifications } from "../api/notifications";
import { NotificationItem } from "./NotificationItem";

export function NotificationsPage() {
  const notifications = useNotifications();
  const mark = useMarkRead();
  return (
    <section>
      <div className="page-head">
        <h1>Notifications</h1>
        <button type="button" onClick={() => mark.mutate("all")} disabled={mark.isPending}>
          Mark all read
        </button>
      </div>
      <ErrorMessage error={notifications.error ?? mark.error} />
      {!notifications.data ? (
        <Loading what="notifications" />
      ) : notifications.data.items.length === 0 ? (
        <Empty>Nothing yet. Finished jobs and shared projects show up here.</Empty>
      ) : (
        <ul className="notifications">
          {notifications.data.items.map((n) => (
            <NotificationItem key={n.id} notification={n} onRead={() => mark.mutate(n.id)} time={formatTime(n.created_at)} />
          ))}
        </ul>
      )}
    </section>
  );
}
