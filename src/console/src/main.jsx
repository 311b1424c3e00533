// The console's shell: session start-up, the org switcher, navigation and hash routing (#/keys, …), so
// the server needs no route but /console/.
import "uplot/dist/uPlot.min.css";
import "./styles.css";
import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import { call, onUnauthorized, session } from "./api.js";
import { endSession, go, loadOrgs, routeOf, selectOrg, signOut } from "./session.js";
import { can } from "./perms.js";
import { currentOrg, state, useStore } from "./store.js";
import { Select } from "./ui.jsx";
import { AuditPage } from "./pages/audit.jsx";
import { KeysPage } from "./pages/keys.jsx";
import { MembersPage } from "./pages/members.jsx";
import { ModelsPage } from "./pages/models.jsx";
import { PlaygroundPage } from "./pages/playground.jsx";
import { SignInPage } from "./pages/signin.jsx";
import { UsagePage } from "./pages/usage.jsx";
import { UsersPage } from "./pages/users.jsx";


const PAGES = [
  { route: "usage", title: "Usage", component: UsagePage },
  { route: "keys", title: "API keys", component: KeysPage },
  { route: "members", title: "Members", component: MembersPage },
  { route: "playground", title: "Playground", component: PlaygroundPage },
  { route: "models", title: "Models", component: ModelsPage },
  { route: "audit", title: "Audit log", component: AuditPage, visible: (u, role) => can(u, role, "audit:read") },
  { route: "users", title: "Users", component: UsersPage, visible: (u) => Boolean(u && u.platform_admin) },
];

function useRoute() {
  const [route, setRoute] = useState(routeOf(location.hash));
  useEffect(() => {
    const fn = () => setRoute(routeOf(location.hash));
    addEventListener("hashchange", fn);
    return () => removeEventListener("hashchange", fn);
  }, []);
  return route;
}

onUnauthorized((message) => {
  if (state.user || session.token()) endSession(message);
});

function Header({ route }) {
  const st = useStore();
  const org = currentOrg();
  const role = org ? org.role : null;
  const pages = PAGES.filter((p) => !p.visible || p.visible(st.user, role));
  return (
    <header class="top">
      <div class="bar">
        <a class="brand" href="#/usage">aiaas console</a>
        <div class="org-switch">
          {st.orgs.length > 0 ? (
            <Select label="Organization" name="org" value={st.orgId || ""} onChange={selectOrg}
              options={st.orgs.map((o) => [o.id, o.mine ? `${o.name} (${o.role})` : `${o.name} (platform admin)`])} />
          ) : <span class="muted">No organization</span>}
        </div>
        <div class="who">
          <span class="muted">{st.user.email}{st.user.platform_admin ? " · platform admin" : ""}</span>
          <button type="button" class="secondary" onClick={signOut}>Sign out</button>
        </div>
      </div>
      <nav aria-label="Console">
        <ul>
          {pages.map((p) => (
            <li key={p.route}>
              <a href={`#/${p.route}`} aria-current={route === p.route ? "page" : undefined}>{p.title}</a>
            </li>
          ))}
        </ul>
      </nav>
    </header>
  );
}

function App() {
  const st = useStore();
  const route = useRoute();
  const [ready, setReady] = useState(false);

  useEffect(() => {
    (async () => {
      if (session.token()) {
        try {
          const user = await call("GET", "/v1/users/me");
          session.saveUser(user);
          await loadOrgs(user);
        } catch {
          // A 401 has already sent us to the sign-in page; anything else shows there too.
          if (!state.user) session.clear();
        }
      }
      setReady(true);
    })();
  }, []);

  useEffect(() => {
    if (!ready) return;
    if (!st.user && route !== "signin") go("signin");
    else if (st.user && (route === "signin" || !PAGES.some((p) => p.route === route))) go("usage");
  }, [ready, st.user, route]);

  useEffect(() => {
    const page = PAGES.find((p) => p.route === route);
    document.title = `${st.user && page ? page.title : "Sign in"} · aiaas console`;
  }, [route, st.user]);

  if (!ready) return <main id="main"><p role="status">Loading…</p></main>;
  if (!st.user) return <SignInPage />;
  const page = PAGES.find((p) => p.route === route);
  const Page = page ? page.component : null;
  return (
    <>
      <Header route={route} />
      <main id="main">
        {Page && <Page key={`${route}:${st.orgId}`} />}
      </main>
      <footer class="foot"><p class="muted">aiaas · the API this page calls is documented in the API reference.</p></footer>
    </>
  );
}

render(<App />, document.getElementById("app"));
