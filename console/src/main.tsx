// Ferry's console: every step of change tracking and data synchronization in a browser, on
// the same HTTP API as the CLI (docs/console.md).
import { render } from "preact";

import { Instance } from "./pages/Instance";
import { Instances } from "./pages/Instances";
import { useRoute } from "./router";
import "./style.css";

function App() {
  const route = useRoute();
  return (
    <>
      <header class="top">
        <a href="#/" class="brand">
          Ferry
        </a>
        <span class="muted">data transmission for MySQL and MariaDB</span>
      </header>
      <main>{route.page === "instance" && route.id ? <Instance id={route.id} tab={route.tab ?? "overview"} key={route.id} /> : <Instances />}</main>
    </>
  );
}

const root = document.getElementById("app");
if (root) render(<App />, root);
