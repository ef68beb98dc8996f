"""The Streamlit pages, one module each; ui/nav.py lists them with the roles that see them."""
