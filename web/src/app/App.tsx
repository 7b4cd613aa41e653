import { QueryClientProvider } from "@tanstack/react-query";
import { lazy, Suspense, useState, type ReactNode } from "react";
import { BrowserRouter, Navigate, Route, Routes, useLocation } from "react-router";
import { endedByLogout } from "../api/session";
import { Loading } from "../components/Feedback";
import { useIsLoggedIn } from "../features/auth/api/session";
import { LoginPage } from "../features/auth/components/LoginPage";
// The landing page comes with the shell: it renders without waiting for another chunk.
import { DashboardPage } from "../features/dashboard/components/DashboardPage";
import { Layout } from "./Layout";
import { createQueryClient } from "./queryClient";

// Every other page is its own chunk, loaded when it is first visited.
const page = <K extends string>(load: () => Promise<Record<K, () => ReactNode>>, name: K) =>
  lazy(async () => ({ default: (await load())[name] }));

const ProjectsPage = page(() => import("../features/projects/components/ProjectsPage"), "ProjectsPage");
const ProjectPage = page(() => import("../features/projects/components/ProjectPage"), "ProjectPage");
const ExperimentPage = page(() => import("../features/projects/components/ExperimentPage"), "ExperimentPage");
const DatasetPage = page(() => import("../features/datasets/components/DatasetPage"), "DatasetPage");
const JobsPage = page(() => import("../features/training/components/JobsPage"), "JobsPage");
const NewJobPage = page(() => import("../features/training/components/NewJobPage"), "NewJobPage");
const JobPage = page(() => import("../features/training/components/JobPage"), "JobPage");
const ModelsPage = page(() => import("../features/models/components/ModelsPage"), "ModelsPage");
const ModelPage = page(() => import("../features/models/components/ModelPage"), "ModelPage");
const InferencePage = page(() => import("../features/inference/components/InferencePage"), "InferencePage");
const NotificationsPage = page(() => import("../features/notifications/components/NotificationsPage"), "NotificationsPage");
const ProfilePage = page(() => import("../features/auth/components/ProfilePage"), "ProfilePage");
const UsersPage = page(() => import("../features/admin/components/UsersPage"), "UsersPage");
const AuditPage = page(() => import("../features/admin/components/AuditPage"), "AuditPage");
const HistoryPage = page(() => import("../features/admin/components/HistoryPage"), "HistoryPage");
const StatsPage = page(() => import("../features/admin/components/StatsPage"), "StatsPage");

function RequireLogin({ children }: { children: ReactNode }) {
  const loggedIn = useIsLoggedIn();
  const location = useLocation();
  // An expired session comes back to this page after logging in again; a logout does not.
  if (!loggedIn) return <Navigate to="/login" replace state={endedByLogout() ? null : { from: location.pathname + location.search }} />;
  return children;
}

export function AppRoutes() {
  return (
    <Routes>
      <Route path="/login" element={<LoginPage />} />
      <Route
        element={
          <RequireLogin>
            <Layout />
          </RequireLogin>
        }
      >
        <Route index element={<DashboardPage />} />
        <Route path="projects" element={<ProjectsPage />} />
        <Route path="projects/:projectId" element={<ProjectPage />} />
        <Route path="experiments/:experimentId" element={<ExperimentPage />} />
        <Route path="datasets/:datasetId" element={<DatasetPage />} />
        <Route path="jobs" element={<JobsPage />} />
        <Route path="jobs/new" element={<NewJobPage />} />
        <Route path="jobs/:jobId" element={<JobPage />} />
        <Route path="models" element={<ModelsPage />} />
        <Route path="models/:modelId" element={<ModelPage />} />
        <Route path="inference" element={<InferencePage />} />
        <Route path="notifications" element={<NotificationsPage />} />
        <Route path="profile" element={<ProfilePage />} />
        <Route path="admin/users" element={<UsersPage />} />
        <Route path="admin/audit" element={<AuditPage />} />
        <Route path="admin/history/:resourceType/:resourceId" element={<HistoryPage />} />
        <Route path="admin/stats" element={<StatsPage />} />
        <Route path="*" element={<p>There is no page here.</p>} />
      </Route>
    </Routes>
  );
}

export function App() {
  const [client] = useState(createQueryClient);
  return (
    <QueryClientProvider client={client}>
      <BrowserRouter>
        <Suspense fallback={<Loading what="the page" />}>
          <AppRoutes />
        </Suspense>
      </BrowserRouter>
    </QueryClientProvider>
  );
}
