// The hosted rating page (admin_api/routes/csat.py): pick 1-5, add a comment, send once.
const form = document.getElementById("csat");
if (form) {
  const words = JSON.parse(form.dataset.words);
  const error = form.querySelector(".error");
  const stars = [...form.querySelectorAll(".star")];
  let rating = Number((stars.find((b) => b.getAttribute("aria-pressed") === "true") || {}).dataset?.value || 0);
  const show = () => stars.forEach((b) => {
    b.setAttribute("aria-pressed", String(Number(b.dataset.value) === rating));
    b.classList.toggle("lit", Number(b.dataset.value) <= rating);
  });
  stars.forEach((b) => b.addEventListener("click", () => { rating = Number(b.dataset.value); error.textContent = ""; show(); }));
  show();
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!rating) { error.textContent = words.pick; return; }
    const comment = form.querySelector("textarea").value.trim();
    const send = form.querySelector(".send");
    send.disabled = true;
    try {
      const res = await fetch(location.pathname, {
        method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ rating, comment: comment || null }),
      });
      if (!res.ok) {
        const body = await res.json().catch(() => ({}));
        throw new Error(body.error?.message || res.statusText);
      }
      form.hidden = true;
      const thanks = document.querySelector(".thanks");
      thanks.textContent = words.thanks;
      thanks.hidden = false;
    } catch (e) {
      error.textContent = words.failed + e.message;
      send.disabled = false;
    }
  });
}
