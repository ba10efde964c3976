// Runs the security-key step of a form marked data-webauthn="create" (register a key) or
// "get" (sign in with one). The server put the ceremony's options in data-options; this asks
// the browser (navigator.credentials), puts the answer in the form's "response" field and
// submits the form. The server checks everything; this file only carries bytes.
"use strict";
(function () {
  function toBytes(b64url) {
    const b64 = b64url.replace(/-/g, "+").replace(/_/g, "/");
    const bin = atob(b64 + "===".slice((b64.length + 3) % 4));
    return Uint8Array.from(bin, (c) => c.charCodeAt(0));
  }
  function toB64url(buffer) {
    let bin = "";
    for (const b of new Uint8Array(buffer)) bin += String.fromCharCode(b);
    return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }
  function withIds(list) {
    return (list || []).map((c) => Object.assign({}, c, { id: toBytes(c.id) }));
  }
  function creation(options) {
    const pk = Object.assign({}, options.publicKey);
    pk.challenge = toBytes(pk.challenge);
    pk.user = Object.assign({}, pk.user, { id: toBytes(pk.user.id) });
    pk.excludeCredentials = withIds(pk.excludeCredentials);
    return { publicKey: pk };
  }
  function request(options) {
    const pk = Object.assign({}, options.publicKey);
    pk.challenge = toBytes(pk.challenge);
    pk.allowCredentials = withIds(pk.allowCredentials);
    return { publicKey: pk };
  }
  function answer(cred) {
    const r = cred.response;
    const response = { clientDataJSON: toB64url(r.clientDataJSON) };
    if (r.attestationObject) {
      response.attestationObject = toB64url(r.attestationObject);
      if (r.getTransports) response.transports = r.getTransports();
    } else {
      response.authenticatorData = toB64url(r.authenticatorData);
      response.signature = toB64url(r.signature);
      if (r.userHandle) response.userHandle = toB64url(r.userHandle);
    }
    return {
      id: cred.id,
      rawId: toB64url(cred.rawId),
      type: cred.type,
      response: response,
      extensions: cred.getClientExtensionResults ? cred.getClientExtensionResults() : {},
    };
  }
  function say(form, text) {
    const status = form.querySelector(".key-status");
    if (status) status.textContent = text;
  }
  for (const form of document.querySelectorAll("form[data-webauthn]")) {
    const button = form.querySelector("button[type=submit]");
    if (!window.PublicKeyCredential || !navigator.credentials) {
      say(form, "This browser cannot use security keys. Choose another way below.");
      if (button) button.disabled = true;
      continue;
    }
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      if (form.dataset.busy) return;
      form.dataset.busy = "1";
      say(form, "Follow your browser's prompt: insert or touch your security key.");
      try {
        const options = JSON.parse(form.dataset.options);
        const cred =
          form.dataset.webauthn === "create"
            ? await navigator.credentials.create(creation(options))
            : await navigator.credentials.get(request(options));
        form.querySelector("input[name=response]").value = JSON.stringify(answer(cred));
        form.submit();
      } catch (e) {
        delete form.dataset.busy;
        say(
          form,
          "Your security key did not answer (" + e.name + "). Try again, or choose another way."
        );
      }
    });
  }
})();
