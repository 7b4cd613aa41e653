import { Link } from "react-router";
import type { Notification } from "../../../api/types";

function linkOf(notification: Notification): string | null {
  const data = notification.data as Record<string, unknown>;
  if (typeof data.job_id === "string") return `/jobs/${data.job_id}`;
  if (typeof data.model_id === "string") return `/models/${data.model_id}`;
  if (typeof data.project_id === "string") return `/projects/${data.project_id}`;
  return null;
}

export function NotificationItem({ notification, time, onRead }: { notification: Notification; time: string; onRead?: () => void }) {
  const link = linkOf(notification);
  return (
    <li className={notification.read ? "read" : "unread"}>
      <div>
        <strong>{link ? <Link to={link}>{notification.title}</Link> : notification.title}</strong>
        <p>{notification.body}</p>
        <small className="muted">{time}</small>
      </div>
      {onRead && !notification.read && (
        <button type="button" onClick={onRead} aria-label={`Mark “${notification.title}” read`}>
          Mark read
        </button>
      )}
    </li>
  );
}
