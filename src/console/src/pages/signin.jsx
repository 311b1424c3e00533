// Sign in with email and password: POST /v1/auth/login gives a session token, kept in sessionStorage.
import { useState } from "preact/hooks";
import { call, session } from "../api.js";
import { loadOrgs } from "../session.js";
import { update, useStore } from "../store.js";
import { Alert, PageTitle, TextInput } from "../ui.jsx";

export function SignInPage() {
  const st = useStore();
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);

  const submit = async (e) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const s = await call("POST", "/v1/auth/login", { body: { email, password }, anonymous: true });
      session.save(s.token, s.user);
      update({ notice: null });
      await loadOrgs(s.user); // the shell then opens the first page

    } catch (err) {
      session.clear();
      update({ user: null });
      setError(err);
      setBusy(false);
    }
  };

  return (
    <main id="main" class="signin">
      <PageTitle>Sign in to aiaas</PageTitle>
      <div aria-live="polite">
        {st.notice && !error && <Alert message={st.notice} kind="info" />}
        <Alert error={error} />
      </div>
      <form onSubmit={submit} class="card">
        <TextInput label="Email" name="email" type="email" autocomplete="username" required value={email}
          onInput={setEmail} />
        <TextInput label="Password" name="password" type="password" autocomplete="current-password" required
          value={password} onInput={setPassword} />
        <button type="submit" disabled={busy}>{busy ? "Signing in…" : "Sign in"}</button>
      </form>
      <p class="muted">The session lives in this browser tab only and ends when you sign out or close the tab.</p>
    </main>
  );
}
