"""The OSVI API client: the API, its answers as values, the listing walk and what it proves about a
window, the rate cap, the API's times."""
