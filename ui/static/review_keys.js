// The Review page's choice keys, installed once per browser tab by ui/keyboard.py (see its docstring for why).
//   1 left, 2 right, 3 about the same, 4 both bad; Shift+1 / Shift+2 also pick "Clearly", 1 / 2 alone "Slightly".
// Enter, S and U are Streamlit's own button shortcuts (st.button(shortcut=...)); they, like these keys, never fire
// while the reviewer types in a text field; Escape leaves the field.
(() => {
  if (window.geoalignReviewKeys) return;
  window.geoalignReviewKeys = true;
  const CHOICE = {Digit1: 0, Digit2: 1, Digit3: 2, Digit4: 3, Numpad1: 0, Numpad2: 1, Numpad3: 2, Numpad4: 3};
  const TOGGLES = ["radio", "checkbox"];
  const typing = (el) => !!el && (el.isContentEditable || el.tagName === "TEXTAREA" || el.tagName === "SELECT"
    || (el.tagName === "INPUT" && !TOGGLES.includes(el.type)));

  // The radio options of the pair on screen, found by its per-assignment key review_ID_FIELD. While the next
  // pair renders, Streamlit keeps the previous one on screen marked data-stale: that one is never clicked.
  const radios = (field) => {
    const pattern = new RegExp(`(^|\\s)st-key-review_\\d+_${field}(\\s|$)`);
    const boxes = [...document.querySelectorAll(`[class*="_${field}"]`)]
      .filter((el) => pattern.test(el.className) && !el.closest('[data-stale="true"]'));
    return boxes.length === 1 ? [...boxes[0].querySelectorAll('input[type="radio"]')] : null;
  };

  const unfocus = () => {  // focus back on the page, where Streamlit's Enter/S/U shortcuts listen
    const el = document.activeElement;
    if (el && el !== document.body && !typing(el)) el.blur();
  };

  const choose = (index, clearly, tries) => {
    const choice = radios("choice");
    if (!choice || choice.length !== 4) {  // between two pairs (both on screen) or not on the Review page
      if (tries > 0) setTimeout(() => choose(index, clearly, tries - 1), 50);
      return;
    }
    choice[index].click();
    const strength = radios("strength");
    if (index < 2 && strength && strength.length === 2) strength[clearly ? 1 : 0].click();
    unfocus();
  };

  document.addEventListener("keydown", (e) => {
    if (e.code === "Escape" && typing(e.target) && e.target.closest('[class*="st-key-review_"]')) {
      e.target.blur();  // out of the comment or rewrite box: the keys act on the page again
      return;
    }
    if (!(e.code in CHOICE) || e.ctrlKey || e.metaKey || e.altKey || e.isComposing || typing(e.target)) return;
    if (!document.querySelector('[class*="st-key-review_"]')) return;  // another page: leave the key alone
    e.preventDefault();
    // e.code, not e.key: Shift+1 is "!" in e.key (and '"' or "§" on other layouts), "Digit1" on every layout
    choose(CHOICE[e.code], e.shiftKey, 20);
  }, true);

  // A radio or button clicked with the mouse keeps the focus, and Streamlit's shortcuts ignore keys aimed at an input
  // field, so Enter after a mouse choice would do nothing: the focus goes back to the page after each click.
  document.addEventListener("click", (e) => {
    if (e.target.closest && e.target.closest('[class*="st-key-review_"]')) setTimeout(unfocus, 0);
  }, true);
})();
