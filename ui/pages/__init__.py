"""The Streamlit pages, one module each; ui/nav.py lists them, with the roles of ui/access.py that see them."""
