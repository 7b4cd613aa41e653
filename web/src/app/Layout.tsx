import { Suspense, useState } from "react";
import { NavLink, Outlet, useNavigate } from "react-router";
import { Loading } from "../components/Feedback";
import { useLogout, useMe } from "../features/auth/api/session";
import { useNotifications } from "../features/notifications/api/notifications";
import { useLiveState } from "../lib/useLive";
import { LiveBridge } from "./LiveBridge";

const LIVE_LABELS = { idle: "offline", connecting: "connecting…", open: "live", reconnecting: "reconnecting…" };

function LiveIndicator() {
  const state = useLiveState();
  return (
    <span className={`live live-${state}`} role="status" aria-live="polite">
      {LIVE_LABELS[state]}
    </span>
  );
}

function UnreadCount() {
  const unread = useNotifications(true);
  const count = unread.data?.meta?.total ?? 0;
  return (
    <NavLink to="/notifications" className="bell" aria-label={`Notifications, ${count} unread`}>
      Inbox{count > 0 && <span className="count">{count}</span>}
    </NavLink>
  );
}

export function Layout() {
  const me = useMe();
  const logout = useLogout();
  const navigate = useNavigate();
  const [menuOpen, setMenuOpen] = useState(false);
  const isAdmin = me.data?.system_role === "admin";
  const close = () => setMenuOpen(false);
  return (
    <div className="shell">
      <LiveBridge />
      <header className="topbar">
        <NavLink to="/" className="brand" onClick={close}>
          AI Platform
        </NavLink>
        <button type="button" className="menu-toggle" aria-expanded={menuOpen} aria-controls="main-nav" onClick={() => setMenuOpen(!menuOpen)}>
          Menu
        </button>
        <LiveIndicator />
        <UnreadCount />
      </header>
      <nav id="main-nav" className={`sidenav${menuOpen ? " open" : ""}`} aria-label="Main">
        <NavLink to="/" end onClick={close}>Dashboard</NavLink>
        <NavLink to="/projects" onClick={close}>Projects</NavLink>
        <NavLink to="/jobs" onClick={close}>Training jobs</NavLink>
        <NavLink to="/models" onClick={close}>Models</NavLink>
        <NavLink to="/inference" onClick={close}>Inference</NavLink>
        <NavLink to="/notifications" onClick={close}>Notifications</NavLink>
        {isAdmin && (
          <>
            <span className="nav-heading">Admin</span>
            <NavLink to="/admin/users" onClick={close}>Users</NavLink>
            <NavLink to="/admin/audit" onClick={close}>Audit log</NavLink>
            <NavLink to="/admin/stats" onClick={close}>System stats</NavLink>
          </>
        )}
        <span className="nav-heading">{me.data?.username ?? "Account"}</span>
        <NavLink to="/profile" onClick={close}>Profile</NavLink>
        <button type="button" className="link" onClick={() => logout.mutate(undefined, { onSettled: () => navigate("/login") })}>
          Log out
        </button>
      </nav>
      <main className="content">
        <Suspense fallback={<Loading what="the page" />}>
          <Outlet />
        </Suspense>
      </main>
    </div>
  );
}
