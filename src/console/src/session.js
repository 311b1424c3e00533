// Session life cycle and navigation, shared by the shell and the pages.
import { call, session } from "./api.js";
import { state, update } from "./store.js";

const ORG_KEY = "aiaas.console.org";

export function routeOf(hash) {
  const m = /^#\/([a-z-]+)/.exec(hash || "");
  return m ? m[1] : "";
}

export function go(route) {
  if (routeOf(location.hash) !== route) location.hash = `#/${route}`;
}

/** Loads the user's orgs (and, for platform admins, every org) and picks the current one. */
export async function loadOrgs(user = state.user) {
  const mine = await call("GET", "/v1/orgs", { query: { limit: 100 } });
  const orgs = mine.data.map((o) => ({ ...o, mine: true }));
  if (user && user.platform_admin) {
    const all = await call("GET", "/v1/admin/orgs", { query: { limit: 100 } });
    for (const o of all.data) {
      if (!orgs.some((m) => m.id === o.id)) orgs.push({ ...o, role: null, mine: false });
    }
  }
  const saved = sessionStorage.getItem(ORG_KEY);
  const orgId = orgs.some((o) => o.id === saved) ? saved : (orgs[0] ? orgs[0].id : null);
  update({ user, orgs, orgId });
}

export function selectOrg(orgId) {
  sessionStorage.setItem(ORG_KEY, orgId);
  update({ orgId });
}

export async function signOut() {
  try {
    await call("POST", "/v1/auth/logout");
  } catch {
    // The session may have ended already; either way this tab forgets it.
  }
  endSession("You have signed out.");
}

export function endSession(notice) {
  session.clear();
  sessionStorage.removeItem(ORG_KEY);
  update({ user: null, orgs: [], orgId: null, lastSecret: null, notice });
  go("signin");
}

