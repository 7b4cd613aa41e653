import { useEffect } from "react";
import { useProjects } from "../api/projects";

// Chooses the project a page lists things of; the first one until the user picks another.
export function ProjectPicker({ value, onChange }: { value: string; onChange: (projectId: string) => void }) {
  const projects = useProjects({ limit: 100 });
  const first = projects.data?.items[0]?.id;
  useEffect(() => {
    if (!value && first) onChange(first);
  }, [value, first, onChange]);
  return (
    <div className="field inline">
      <label htmlFor="project-picker">Project</label>
      <select id="project-picker" value={value} onChange={(e) => onChange(e.target.value)}>
        {projects.data?.items.length === 0 && <option value="">no projects yet</option>}
        {projects.data?.items.map((project) => (
          <option key={project.id} value={project.id}>
            {project.name}
          </option>
        ))}
      </select>
    </div>
  );
}
