import "@testing-library/jest-dom/vitest";
import { cleanup } from "@testing-library/react";
import { afterEach } from "vitest";

// What jsdom lacks and the charts (uPlot) use: a 2D canvas context and paths that draw nothing,
// matchMedia (uPlot follows devicePixelRatio changes with it), and ResizeObserver (charts follow
// their container's width).
const drawn = new Proxy({} as Record<string | symbol, unknown>, {
  get(target, key) {
    if (key === "measureText") return () => ({ width: 8 });
    if (!(key in target)) target[key] = () => undefined;
    return target[key];
  },
  set(target, key, value) {
    target[key] = value;
    return true;
  },
});
// Every method of a path (moveTo, lineTo, rect, arc, …) does nothing.
globalThis.Path2D ??= class {
  constructor() {
    return new Proxy(this, { get: (target, key) => (key in target ? target[key as keyof typeof target] : () => undefined) });
  }
} as unknown as typeof Path2D;
HTMLCanvasElement.prototype.getContext = (() => drawn) as unknown as HTMLCanvasElement["getContext"];

window.matchMedia ??= (query: string) =>
  ({
    matches: false,
    media: query,
    onchange: null,
    addEventListener: () => undefined,
    removeEventListener: () => undefined,
    addListener: () => undefined,
    removeListener: () => undefined,
    dispatchEvent: () => false,
  }) as MediaQueryList;

globalThis.ResizeObserver ??= class {
  observe(): void {}
  unobserve(): void {}
  disconnect(): void {}
};

afterEach(() => {
  cleanup();
  localStorage.clear();
});
