import { useState } from "react";
import { Link, useNavigate, useSearchParams } from "react-router";
import { Empty, ErrorMessage, Loading, StatusBadge } from "../../../components/Feedback";
import { Pagination } from "../../../components/Pagination";
import { useCreateProject, useProjects } from "../api/projects";
import { ProjectForm } from "./ProjectForm";

export function ProjectsPage() {
  const [params, setParams] = useSearchParams();
  const filters = {
    q: params.get("q") ?? undefined,
    status: params.get("status") ?? undefined,
    tag: params.get("tag") ?? undefined,
    page: Number(params.get("page") ?? 1),
  };
  const projects = useProjects(filters);
  const create = useCreateProject();
  const navigate = useNavigate();
  const [creating, setCreating] = useState(false);

  function setFilter(name: string, value: string) {
    const next = new URLSearchParams(params);
    if (value) next.set(name, value);
    else next.delete(name);
    if (name !== "page") next.delete("page");
    setParams(next, { replace: true });
  }

  return (
    <section>
      <div className="page-head">
        <h1>Projects</h1>
        <button type="button" className="primary" onClick={() => setCreating(!creating)} aria-expanded={creating}>
          New project
        </button>
      </div>
      {creating && (
        <div className="card">
          <h2>New project</h2>
          <ProjectForm
            submitLabel="Create project"
            pending={create.isPending}
            error={create.error}
            onSubmit={(values) => create.mutate(values, { onSuccess: (project) => navigate(`/projects/${project.id}`) })}
          />
        </div>
      )}
      <div className="filters" role="search">
        <label>
          Search
          <input type="search" defaultValue={filters.q} onChange={(e) => setFilter("q", e.target.value)} />
        </label>
        <label>
          Status
          <select value={filters.status ?? ""} onChange={(e) => setFilter("status", e.target.value)}>
            <option value="">any</option>
            <option value="active">active</option>
            <option value="archived">archived</option>
          </select>
        </label>
        <label>
          Tag
          <input defaultValue={filters.tag} onChange={(e) => setFilter("tag", e.target.value)} />
        </label>
      </div>
      <ErrorMessage error={projects.error} />
      {projects.isPending ? (
        <Loading what="projects" />
      ) : projects.data?.items.length === 0 ? (
        <Empty>No projects match. Create one to start.</Empty>
      ) : (
        <ul className="cards">
          {projects.data?.items.map((project) => (
            <li key={project.id} className="card">
              <h2>
                <Link to={`/projects/${project.id}`}>{project.name}</Link> <StatusBadge status={project.status} />
              </h2>
              <p>{project.description || <span className="muted">No description</span>}</p>
              <p className="tags">
                {project.tags.map((tag) => (
                  <button type="button" key={tag} className="tag" onClick={() => setFilter("tag", tag)}>
                    {tag}
                  </button>
                ))}
              </p>
            </li>
          ))}
        </ul>
      )}
      <Pagination meta={projects.data?.meta} onPage={(page) => setFilter("page", String(page))} />
    </section>
  );
}
