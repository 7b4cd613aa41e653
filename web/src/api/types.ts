// Names for the generated OpenAPI types (`npm run schema` regenerates schema.d.ts).
import type { components } from "./schema";

type Schemas = components["schemas"];
export type AuditEntry = Schemas["AuditEntry"];
export type Dataset = Schemas["DatasetView"];
export type DatasetDetail = Schemas["DatasetOut"];
export type DatasetVersion = Schemas["VersionView"];
export type GpuStatus = Schemas["GpuStatus"];
export type GpuSample = Schemas["GpuSample"];
export type HistoryEvent = Schemas["HistoryEvent"];
export type Hyperparameter = Schemas["Hyperparameter"];
export type Job = Schemas["JobView"];
export type JobStatus = Schemas["JobStatusView"];
export type LogLine = Schemas["LogLineView"];
export type LossCurve = Schemas["LossCurve"];
export type Model = Schemas["ModelView"];
export type ModelUpdate = Schemas["ModelUpdate"];
export type Notification = Schemas["NotificationView"];
export type Project = Schemas["ProjectView"];
export type ProjectCreate = Schemas["ProjectCreate"];
export type ProjectUpdate = Schemas["ProjectUpdate"];
export type Role = Schemas["RoleView"];
export type ServableModel = Schemas["ServableModel"];
export type Template = Schemas["Template"];
export type TokenPair = Schemas["TokenPair"];
export type TrainingSubmit = Schemas["TrainingSubmit"];
export type User = Schemas["UserView"];
export type DirectoryEntry = Schemas["DirectoryEntry"];
export type Me = Schemas["UserOut"];
export type UserCreate = Schemas["UserCreate"];
export type UserUpdate = Schemas["UserUpdate"];
export type GenerateRequest = Schemas["GenerateRequest"];

export interface PageMeta {
  total: number;
  page: number;
  limit: number;
  has_more: boolean;
}

export interface Page<T> {
  items: T[];
  meta: PageMeta;
}
export type PlatformStats = Schemas["PlatformStats"];
