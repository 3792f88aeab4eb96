import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import { Compare } from "./compare";
import { Dashboard } from "./dashboard";
import { useRoute } from "./route";
import { RunPage } from "./runpage";
import "./style.css";

function Header() {
  const [version, setVersion] = useState("");
  useEffect(() => {
    fetch("api/v1/health")
      .then((r) => r.json())
      .then((h) => setVersion(String(h.version ?? "")))
      .catch(() => setVersion(""));
  }, []);
  return (
    <header class="top">
      <a href="#/" class="brand">labtrack</a>
      <nav>
        <a href="#/">runs</a>
      </nav>
      <span class="spacer" />
      {version && <span class="muted mono">v{version}</span>}
    </header>
  );
}

function App() {
  const route = useRoute();
  let view;
  const m = route.path.match(/^\/run\/([^/]+)$/);
  if (m) view = <RunPage id={decodeURIComponent(m[1])} route={route} />;
  else if (route.path === "/compare") view = <Compare route={route} />;
  else view = <Dashboard route={route} />;
  return (
    <>
      <Header />
      <main>{view}</main>
    </>
  );
}

render(<App />, document.getElementById("app")!);
