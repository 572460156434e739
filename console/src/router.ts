// A hash router: `#/` (instances), `#/instances/<id>/<tab>`. The hash keeps every screen a
// link that survives a reload without the server knowing the console's routes.
import { useEffect, useState } from "preact/hooks";

export interface Route {
  page: "instances" | "instance";
  id?: string;
  tab?: string;
}

export function parse(hash: string): Route {
  const parts = hash.replace(/^#\/?/, "").split("/").filter(Boolean).map(decodeURIComponent);
  if (parts[0] === "instances" && parts[1]) return { page: "instance", id: parts[1], tab: parts[2] ?? "overview" };
  return { page: "instances" };
}

export function href(route: Route): string {
  if (route.page === "instance" && route.id) return `#/instances/${encodeURIComponent(route.id)}/${route.tab ?? "overview"}`;
  return "#/";
}

export function go(route: Route) {
  location.hash = href(route);
}

export function useRoute(): Route {
  const [route, setRoute] = useState(parse(location.hash));
  useEffect(() => {
    const on = () => setRoute(parse(location.hash));
    addEventListener("hashchange", on);
    return () => removeEventListener("hashchange", on);
  }, []);
  return route;
}
