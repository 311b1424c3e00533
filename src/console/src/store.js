// The console's state: the signed-in user, their organizations, the current one, and the last API key
// secret created in this tab (memory only: never stored, gone on reload, offered to the playground).
import { useEffect, useState } from "preact/hooks";

const listeners = new Set();

export const state = {
  user: null,
  orgs: [],
  orgId: null,
  notice: null, // a message for the sign-in page (why the session ended)
  lastSecret: null, // {key, name, prefix}
};

export function update(patch) {
  Object.assign(state, patch);
  for (const fn of listeners) fn();
}

/** Re-renders the calling component whenever the state changes. */
export function useStore() {
  const [, setTick] = useState(0);
  useEffect(() => {
    const fn = () => setTick((t) => t + 1);
    listeners.add(fn);
    return () => listeners.delete(fn);
  }, []);
  return state;
}

/** The current org and the user's role in it (null for an org a platform admin reads from outside). */
export function currentOrg() {
  return state.orgs.find((o) => o.id === state.orgId) || null;
}
